"""Loading ``--init``'s weights into the model a run trains: one rule for the single-network tasks and
each part of the joint one."""
from __future__ import annotations


def load_init_state(model, state: dict, init, source_config=None) -> None:
    """--init's weights into ``model``, strictly, except that a direction checkpoint written before the
    steer head lacks it, and a detector given added anchor levels (``source_config``: the checkpoint's
    DetectorConfig) lacks theirs: those start fresh."""
    from training.tasks.direction import STEER_HEAD_PREFIX

    fresh: tuple[str, ...] = (STEER_HEAD_PREFIX,)
    if source_config is not None and getattr(model, "config", None) is not None and hasattr(source_config, "anchors") \
            and source_config.anchors != model.config.anchors:
        from perception.detector import grown_state

        state, added = grown_state(state, source_config, model.config)
        fresh += added
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith(fresh)]
    if missing or unexpected:
        raise ValueError(f"--init {init}: its weights do not fit the model (missing {missing[:3]}, unexpected "
                         f"{unexpected[:3]})")
