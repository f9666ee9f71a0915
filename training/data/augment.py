"""Training-time augmentation on uint8 image tensors, box- and label-aware.

Pipeline (torchvision.transforms.v2 with tv_tensors.BoundingBoxes):

1. horizontal flip (p = ``flip_p`` when ``AugmentConfig.flip`` is on): mirrors the image and the boxes, and swaps the
   "left" and "right" direction labels (a mirrored left bend is a right bend);
2. random resized crop back to the model input size (skipped when ``crop_min_scale`` is 1, the
   default of direction and joint runs: a crop shifts the road sideways and the direction label
   does not follow): boxes follow the crop;
   boxes of which less than ``min_visibility`` of the area stays inside are
   dropped, then ``SanitizeBoundingBoxes`` drops degenerate ones;
3. colour jitter (brightness, contrast, saturation, hue): the per-sample
   factors are drawn here, with the rest of the sample's randomness, but
   applied later to the whole batch on the training device
   (:func:`color_jitter_batch`): a per-pixel colour transform on the CPU
   costs more than the crop itself and would starve a GPU.

Every call is a pure function of its ``seed`` (the global torch RNG is forked
and seeded per sample), so an interrupted run that resumes draws exactly the
same augmentations whatever the number of DataLoader workers.
"""
from __future__ import annotations

import math

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from perception.boxes import scale_boxes
from perception.types import DIRECTIONS
from training.config import AugmentConfig



def swap_left_right(direction: int, directions: tuple[str, ...] = DIRECTIONS) -> int:
    """Index of the mirrored direction: left <-> right, others unchanged."""
    name = directions[direction]
    mirrored = {"left": "right", "right": "left"}.get(name, name)
    return directions.index(mirrored)


class Augmenter:
    """Seeded augmentation of one sample at model resolution.

    __call__(image (3,H,W) uint8, boxes (N,4) float xyxy px of that image,
    labels (N,) int64, direction int or -1, seed int, box_weights (N,) float or None)
    -> (image (3,h,w) uint8 with (h, w) = out_size, boxes (M,4) float32 xyxy px
    of the output, labels (M,), direction, jitter (4,) float32 colour factors
    for :func:`color_jitter_batch`).

    input_size: the model input (H_in, W_in) whose pixel scale the output has (default out_size).
    When out_size is smaller (a training crop), every sample is cropped: the window covers
    out_size / input_size of the image in each dimension, times sqrt(s) for s drawn from
    config.crop_scale, so objects come out at the size they have in the full model input (crop
    scale 1) or larger. The image itself may have any resolution: the window is a share of it.
    box_weights: how likely each box is to be the one a crop is placed on (config.crop_on_boxes);
    None: all alike.

    config: a resolved AugmentConfig (:meth:`~training.config.AugmentConfig.for_task`); the default is
    the detector's.
    """

    def __init__(self, out_size: tuple[int, int], config: AugmentConfig = AugmentConfig().for_task("detector"),
                 directions: tuple[str, ...] = DIRECTIONS, input_size: tuple[int, int] | None = None) -> None:
        self.out_size = (int(out_size[0]), int(out_size[1]))
        self.input_size = self.out_size if input_size is None else (int(input_size[0]), int(input_size[1]))
        if self.out_size[0] > self.input_size[0] or self.out_size[1] > self.input_size[1]:
            raise ValueError(f"training crop {self.out_size} (H, W) is larger than the model input {self.input_size}; "
                             "give a crop no larger than --input-height/--input-width")
        self.window_share = (self.out_size[0] * self.out_size[1]) / (self.input_size[0] * self.input_size[1])
        self.config = config
        self.crop_scale = config.crop_scale  # raises for an unresolved config
        self.flip_p = config.flip_p if config.flip else 0.0
        self.directions = directions
        self._crops: dict[tuple[int, int], v2.RandomResizedCrop] = {}
        self._sanitize = v2.SanitizeBoundingBoxes(min_size=1.0, labels_getter=lambda inputs: inputs[2])

    @property
    def crops(self) -> bool:
        """Whether samples are cropped: config.crops, or training crops smaller than the input."""
        return self.config.crops or self.window_share < 1.0

    def _crop_for(self, height: int, width: int) -> v2.RandomResizedCrop:
        """The crop transform for inputs of this size. torchvision's ``ratio`` bounds the crop's absolute
        width/height, config.crop_ratio is relative to the input, so the bounds are scaled by the input's
        aspect (unscaled, a 4:3 frame was always cut near-square and stretched back to 4:3, widening
        every road angle the models learn from), and for a training crop by the crop's aspect over
        the model input's: the window, mapped into model-input px, has the crop's shape. The area
        share is config.crop_scale times :attr:`window_share`."""
        crop = self._crops.get((height, width))
        if crop is None:
            (out_h, out_w), (in_h, in_w) = self.out_size, self.input_size
            aspect = (width / height) * (out_w / out_h) / (in_w / in_h)
            low, high = self.config.crop_ratio
            scale = tuple(s * self.window_share for s in self.crop_scale)
            crop = v2.RandomResizedCrop(self.out_size, scale=scale, ratio=(low * aspect, high * aspect),
                                        antialias=True)
            self._crops[(height, width)] = crop
        return crop

    def __call__(self, image: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor, direction: int, seed: int,
                 box_weights: torch.Tensor | None = None):
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(int(seed) & 0x7FFF_FFFF_FFFF_FFFF)  # CPU only: cheap
            return self._apply(image, boxes, labels, direction, box_weights)

    def flips(self, seed: int) -> bool:
        """Whether the sample of ``seed`` comes out mirrored: the first draw of :meth:`__call__` for that
        seed, replayed (a continuous steer label changes sign with the mirror: + = right)."""
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(int(seed) & 0x7FFF_FFFF_FFFF_FFFF)
            return self._draw_flip()

    def _draw_flip(self) -> bool:
        return bool(torch.rand(()) < self.flip_p)

    def _apply(self, image, boxes, labels, direction, box_weights=None):
        height, width = image.shape[-2:]
        img = tv_tensors.Image(image)
        bxs = tv_tensors.BoundingBoxes(boxes.float().reshape(-1, 4), format="XYXY", canvas_size=(height, width))
        if self._draw_flip():  # the first draw of every sample: flips() replays it
            img = F.horizontal_flip(img)
            bxs = F.horizontal_flip(bxs)
            if direction >= 0:
                direction = swap_left_right(direction, self.directions)

        if self.crops:
            img, bxs, labels = self._crop(img, bxs, labels, int(height), int(width), box_weights)
        elif (int(height), int(width)) != self.out_size:
            img, bxs = F.resize(img, list(self.out_size), antialias=True), F.resize(bxs, list(self.out_size))
        img, bxs, labels = self._sanitize((img, bxs, labels))
        brightness, contrast, saturation, hue = self.config.jitter_strengths
        low_high = torch.tensor([[1 - brightness, 1 + brightness], [1 - contrast, 1 + contrast],
                                 [1 - saturation, 1 + saturation], [-hue, hue]])
        jitter = low_high[:, 0] + torch.rand(4) * (low_high[:, 1] - low_high[:, 0])
        return (img.as_subclass(torch.Tensor).contiguous(), bxs.as_subclass(torch.Tensor).float(),
                labels, direction, jitter.float())

    def _crop(self, img, bxs, labels, height: int, width: int, box_weights=None):
        """Random resized crop back to out_size; boxes follow, those less than min_visibility inside are dropped."""
        crop = self._crop_for(height, width)
        params = crop.make_params([img])
        if len(bxs) and self.config.crop_on_boxes > 0 and torch.rand(()) < self.config.crop_on_boxes:
            params.update(self._window_on_a_box(bxs.as_subclass(torch.Tensor), params, height, width, box_weights))
        top, left, crop_h, crop_w = params["top"], params["left"], params["height"], params["width"]
        area_before = (bxs[:, 2] - bxs[:, 0]).clamp(min=0) * (bxs[:, 3] - bxs[:, 1]).clamp(min=0)
        inside = bxs.as_subclass(torch.Tensor).clone()
        inside[:, 0::2] = (inside[:, 0::2] - left).clamp(0, crop_w)
        inside[:, 1::2] = (inside[:, 1::2] - top).clamp(0, crop_h)
        area_inside = (inside[:, 2] - inside[:, 0]) * (inside[:, 3] - inside[:, 1])
        visible = area_inside >= self.config.min_visibility * area_before.clamp(min=1e-6)

        img = crop.transform(img, params)
        bxs = crop.transform(bxs, params)  # clamps to the crop
        return img, tv_tensors.wrap(bxs[visible], like=bxs), labels[visible]


    @staticmethod
    def _window_on_a_box(boxes: torch.Tensor, params: dict, height: int, width: int,
                         box_weights: torch.Tensor | None = None) -> dict:
        """top/left placing the drawn window (params' height x width, image px) so that it holds one box
        of ``boxes`` (N, 4) xyxy image px whole, the box drawn at random (in proportion to ``box_weights``
        (N,) when given, else uniformly) and the place uniformly among those that hold it; the window's
        own top/left where the box does not fit in it."""
        if box_weights is None:
            box = boxes[int(torch.randint(len(boxes), ()))]
        else:
            box = boxes[int(torch.multinomial(box_weights.double(), 1))]
        crop_h, crop_w = int(params["height"]), int(params["width"])
        placed = {}
        for key, low_edge, high_edge, size, extent in (("left", box[0], box[2], crop_w, width),
                                                       ("top", box[1], box[3], crop_h, height)):
            lowest = max(0, math.ceil(float(high_edge)) - size)  # the window's far edge reaches the box's
            highest = min(extent - size, math.floor(float(low_edge)))  # its near edge before the box's
            if lowest > highest:
                return {}
            placed[key] = int(torch.randint(lowest, highest + 1, ()))
        return placed


#: jitter factors that leave colours unchanged: brightness, contrast, saturation x1, hue +0
IDENTITY_JITTER = (1.0, 1.0, 1.0, 0.0)

_GRAY = (0.299, 0.587, 0.114)
_RGB_TO_YIQ = ((0.299, 0.587, 0.114), (0.596, -0.274, -0.322), (0.211, -0.523, 0.312))


def color_jitter_batch(x: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """Per-image colour jitter of a batch, on x's device.

    x: (B, 3, H, W) float RGB in [0, 1]; factors: (B, 4) = brightness, contrast,
    saturation multipliers and a hue shift in turns (fractions of the colour
    wheel, like torchvision's ColorJitter). Applied in that order; brightness,
    contrast and saturation as torchvision defines them, hue as a rotation of
    the chroma plane in YIQ space (a linear approximation of an HSV hue shift).
    Returns (B, 3, H, W) clamped to [0, 1].
    """
    f = factors.to(x.device, x.dtype)
    gray_w = torch.tensor(_GRAY, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    x = (x * f[:, 0].view(-1, 1, 1, 1)).clamp(0, 1)
    mean = (x * gray_w).sum(1, keepdim=True).mean(dim=(2, 3), keepdim=True)
    x = (mean + (x - mean) * f[:, 1].view(-1, 1, 1, 1)).clamp(0, 1)
    gray = (x * gray_w).sum(1, keepdim=True)
    x = (gray + (x - gray) * f[:, 2].view(-1, 1, 1, 1)).clamp(0, 1)
    if bool((f[:, 3] != 0).any()):
        to_yiq = torch.tensor(_RGB_TO_YIQ, device=x.device, dtype=x.dtype)
        theta = f[:, 3] * 2 * torch.pi
        cos, sin = torch.cos(theta), torch.sin(theta)
        rot = torch.zeros(len(f), 3, 3, device=x.device, dtype=x.dtype)
        rot[:, 0, 0] = 1
        rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = cos, -sin, sin, cos
        matrix = torch.linalg.inv(to_yiq) @ rot @ to_yiq  # (B, 3, 3)
        x = torch.einsum("bij,bjhw->bihw", matrix, x).clamp(0, 1)
    return x


def resize_sample(image: torch.Tensor, boxes: torch.Tensor, out_size: tuple[int, int]):
    """Deterministic resize of a (3,H,W) uint8 image and its (N,4) xyxy boxes to out_size (h, w)."""
    height, width = image.shape[-2:]
    if (height, width) == tuple(out_size):
        return image, boxes.float().reshape(-1, 4)
    resized = F.resize(image, list(out_size), antialias=True)
    return resized, scale_boxes(boxes.float().reshape(-1, 4), (height, width), out_size)
