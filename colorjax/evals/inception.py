"""The Inception-v3 of Frechet Inception Distance (Heusel et al. 2017) in Flax Linen, and its
weights.

The network is the one of the TF FID reference code (`inception-2015-12-05`) as ported to PyTorch
by pytorch-fid (`pt_inception-2015-12-05-6726825d.pth`): torchvision's Inception-v3 layout with
the FID patches (average pools that ignore padding in Mixed_5*/6*/7b, a max pool in Mixed_7c's
pool branch, BatchNorm eps 1e-3). Features are the 2048-d output of the final average pool
("pool3"). Inputs are RGB in [0, 1], resized to 299 x 299 bilinearly without antialiasing
(pytorch-fid's `F.interpolate(..., align_corners=False)`) and scaled to [-1, 1].

Weights are never downloaded: the user supplies a file (`config.evals.fid.weights`).

File format: a NumPy `.npz` holding one float32 array per parameter, named by its path in the
Flax param tree joined with '/', e.g. `Mixed_5b/branch1x1/conv/kernel` (HWIO) or
`Mixed_5b/branch1x1/bn/{scale,bias,mean,var}`. The names mirror the PyTorch state dict
(`Mixed_5b.branch1x1.conv.weight` ...), so the conversion is a rename plus a transpose, and the
file is readable without JAX or Flax. The pytorch-fid weights are converted (`convert_pytorch_fid`)
by

  python -m colorjax.prepare --src=pt_inception-2015-12-05-6726825d.pth \
    --fid_weights=fid_inception.npz

which needs `torch` importable (only to unpickle the .pth).
"""

from __future__ import annotations

import functools
import os
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

FEATURE_DIM = 2048
INPUT_SIZE = 299
_BN_EPSILON = 1e-3  # torchvision / TF Inception BatchNorm epsilon.

Params = Mapping[str, Any]


class FrozenBatchNorm(nn.Module):
  """Inference-only BatchNorm; all four statistics live in 'params' since nothing is trained."""

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    c = x.shape[-1]
    scale = self.param("scale", nn.initializers.ones, (c,))
    bias = self.param("bias", nn.initializers.zeros, (c,))
    mean = self.param("mean", nn.initializers.zeros, (c,))
    var = self.param("var", nn.initializers.ones, (c,))
    return (x - mean) * (scale * jax.lax.rsqrt(var + _BN_EPSILON)) + bias


class BasicConv(nn.Module):
  """torchvision's BasicConv2d: bias-free conv, BatchNorm, ReLU."""
  features: int
  kernel: tuple[int, int]
  strides: tuple[int, int] = (1, 1)
  padding: tuple[int, int] = (0, 0)

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    x = nn.Conv(
        self.features, self.kernel, self.strides,
        padding=[(p, p) for p in self.padding], use_bias=False,
        # He init keeps activations at unit scale through ~20 ReLU layers, so a randomly
        # initialised network (tests, smoke runs) gives non-degenerate features.
        kernel_init=nn.initializers.he_normal(),
        # Full f32: TPU bf16 passes / GPU TF32 would shift the features and hence FID.
        precision=jax.lax.Precision.HIGHEST, name="conv")(x)
    return nn.relu(FrozenBatchNorm(name="bn")(x))


def _avg_pool_same(x: jnp.ndarray) -> jnp.ndarray:
  # TF's average pool divides by the number of real (unpadded) inputs: the FID patch.
  return nn.avg_pool(x, (3, 3), (1, 1), padding=((1, 1), (1, 1)), count_include_pad=False)


def _max_pool_same(x: jnp.ndarray) -> jnp.ndarray:
  return nn.max_pool(x, (3, 3), (1, 1), padding=((1, 1), (1, 1)))


def _max_pool_down(x: jnp.ndarray) -> jnp.ndarray:
  return nn.max_pool(x, (3, 3), (2, 2))


class InceptionA(nn.Module):
  pool_features: int

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    b1 = BasicConv(64, (1, 1), name="branch1x1")(x)
    b5 = BasicConv(48, (1, 1), name="branch5x5_1")(x)
    b5 = BasicConv(64, (5, 5), padding=(2, 2), name="branch5x5_2")(b5)
    b3 = BasicConv(64, (1, 1), name="branch3x3dbl_1")(x)
    b3 = BasicConv(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(b3)
    b3 = BasicConv(96, (3, 3), padding=(1, 1), name="branch3x3dbl_3")(b3)
    bp = BasicConv(self.pool_features, (1, 1), name="branch_pool")(_avg_pool_same(x))
    return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    b3 = BasicConv(384, (3, 3), strides=(2, 2), name="branch3x3")(x)
    bd = BasicConv(64, (1, 1), name="branch3x3dbl_1")(x)
    bd = BasicConv(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
    bd = BasicConv(96, (3, 3), strides=(2, 2), name="branch3x3dbl_3")(bd)
    return jnp.concatenate([b3, bd, _max_pool_down(x)], axis=-1)


class InceptionC(nn.Module):
  channels_7x7: int

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    c7 = self.channels_7x7
    b1 = BasicConv(192, (1, 1), name="branch1x1")(x)
    b7 = BasicConv(c7, (1, 1), name="branch7x7_1")(x)
    b7 = BasicConv(c7, (1, 7), padding=(0, 3), name="branch7x7_2")(b7)
    b7 = BasicConv(192, (7, 1), padding=(3, 0), name="branch7x7_3")(b7)
    bd = BasicConv(c7, (1, 1), name="branch7x7dbl_1")(x)
    bd = BasicConv(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_2")(bd)
    bd = BasicConv(c7, (1, 7), padding=(0, 3), name="branch7x7dbl_3")(bd)
    bd = BasicConv(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_4")(bd)
    bd = BasicConv(192, (1, 7), padding=(0, 3), name="branch7x7dbl_5")(bd)
    bp = BasicConv(192, (1, 1), name="branch_pool")(_avg_pool_same(x))
    return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    b3 = BasicConv(192, (1, 1), name="branch3x3_1")(x)
    b3 = BasicConv(320, (3, 3), strides=(2, 2), name="branch3x3_2")(b3)
    b7 = BasicConv(192, (1, 1), name="branch7x7x3_1")(x)
    b7 = BasicConv(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(b7)
    b7 = BasicConv(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(b7)
    b7 = BasicConv(192, (3, 3), strides=(2, 2), name="branch7x7x3_4")(b7)
    return jnp.concatenate([b3, b7, _max_pool_down(x)], axis=-1)


class InceptionE(nn.Module):
  # The FID network's last block (Mixed_7c) max-pools its pool branch, unlike the paper.
  max_pool_branch: bool

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    b1 = BasicConv(320, (1, 1), name="branch1x1")(x)
    b3 = BasicConv(384, (1, 1), name="branch3x3_1")(x)
    b3 = jnp.concatenate([
        BasicConv(384, (1, 3), padding=(0, 1), name="branch3x3_2a")(b3),
        BasicConv(384, (3, 1), padding=(1, 0), name="branch3x3_2b")(b3)], axis=-1)
    bd = BasicConv(448, (1, 1), name="branch3x3dbl_1")(x)
    bd = BasicConv(384, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
    bd = jnp.concatenate([
        BasicConv(384, (1, 3), padding=(0, 1), name="branch3x3dbl_3a")(bd),
        BasicConv(384, (3, 1), padding=(1, 0), name="branch3x3dbl_3b")(bd)], axis=-1)
    pooled = _max_pool_same(x) if self.max_pool_branch else _avg_pool_same(x)
    bp = BasicConv(192, (1, 1), name="branch_pool")(pooled)
    return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class InceptionV3(nn.Module):
  """FID Inception-v3 up to pool3: RGB in [0, 1], (B, H, W, 3) -> (B, 2048) float32."""

  @nn.compact
  def __call__(self, rgb01: jnp.ndarray) -> jnp.ndarray:
    x = rgb01.astype(jnp.float32)
    x = jax.image.resize(x, (x.shape[0], INPUT_SIZE, INPUT_SIZE, 3), "bilinear", antialias=False)
    x = 2.0 * x - 1.0
    x = BasicConv(32, (3, 3), strides=(2, 2), name="Conv2d_1a_3x3")(x)
    x = BasicConv(32, (3, 3), name="Conv2d_2a_3x3")(x)
    x = BasicConv(64, (3, 3), padding=(1, 1), name="Conv2d_2b_3x3")(x)
    x = _max_pool_down(x)
    x = BasicConv(80, (1, 1), name="Conv2d_3b_1x1")(x)
    x = BasicConv(192, (3, 3), name="Conv2d_4a_3x3")(x)
    x = _max_pool_down(x)
    x = InceptionA(32, name="Mixed_5b")(x)
    x = InceptionA(64, name="Mixed_5c")(x)
    x = InceptionA(64, name="Mixed_5d")(x)
    x = InceptionB(name="Mixed_6a")(x)
    x = InceptionC(128, name="Mixed_6b")(x)
    x = InceptionC(160, name="Mixed_6c")(x)
    x = InceptionC(160, name="Mixed_6d")(x)
    x = InceptionC(192, name="Mixed_6e")(x)
    x = InceptionD(name="Mixed_7a")(x)
    x = InceptionE(max_pool_branch=False, name="Mixed_7b")(x)
    x = InceptionE(max_pool_branch=True, name="Mixed_7c")(x)
    return jnp.mean(x, axis=(1, 2))


@functools.cache
def _expected_shapes() -> dict[str, tuple[int, ...]]:
  """Flat name -> shape of every parameter, from an abstract init (no FLOPs, no memory)."""
  abstract = jax.eval_shape(InceptionV3().init, jax.random.key(0),
                            jnp.zeros((1, INPUT_SIZE, INPUT_SIZE, 3), jnp.float32))
  flat = traverse_util.flatten_dict(abstract["params"], sep="/")
  return {name: tuple(leaf.shape) for name, leaf in flat.items()}


def init_params(seed: int = 0) -> Params:
  """Randomly initialised parameters (for tests and smoke runs; FID needs trained weights).

  Kernels are N(0, 2 / fan_in), the scale of the module's He init, and BatchNorm is the
  identity. They are drawn with numpy from the abstract shapes because `module.init` (jax's
  truncated normal over 22M parameters) takes over a minute on a 2-core CPU.
  """
  rng = np.random.default_rng(seed)
  bn_values = {"scale": 1.0, "bias": 0.0, "mean": 0.0, "var": 1.0}
  flat = {}
  for name, shape in _expected_shapes().items():
    leaf = name.rsplit("/", 1)[1]
    if leaf == "kernel":
      fan_in = int(np.prod(shape[:-1]))
      flat[name] = (rng.standard_normal(shape, np.float32) * np.sqrt(2.0 / fan_in)).astype(
          np.float32)
    else:
      flat[name] = np.full(shape, bn_values[leaf], np.float32)
  return _check_and_unflatten(flat, "init_params")


def _check_and_unflatten(arrays: Mapping[str, np.ndarray], source: str) -> Params:
  """Validates names and shapes against the module; returns the nested param tree."""
  expected = _expected_shapes()
  missing = sorted(set(expected) - set(arrays))
  if missing:
    raise ValueError(f"{source}: missing {len(missing)} Inception array(s), e.g. "
                     f"{', '.join(missing[:5])}")
  unexpected = sorted(set(arrays) - set(expected))
  if unexpected:
    raise ValueError(f"{source}: unexpected array(s) {', '.join(unexpected[:5])} "
                     f"(not an FID Inception-v3 parameter file?)")
  for name, shape in expected.items():
    got = tuple(np.shape(arrays[name]))
    if got != shape:
      raise ValueError(f"{source}: array {name!r} has shape {got}, expected {shape}")
  flat = {name: jnp.asarray(arrays[name], jnp.float32) for name in expected}
  return traverse_util.unflatten_dict(flat, sep="/")


def save_params(path: str, params: Params) -> None:
  """Writes params to the `.npz` format described in the module docstring."""
  flat = traverse_util.flatten_dict(jax.device_get(params), sep="/")
  arrays = {name: np.asarray(leaf, np.float32) for name, leaf in flat.items()}
  _check_and_unflatten(arrays, path)  # Never write a file that load_inception would reject.
  # np.savez appends '.npz' to a name without it; write through a handle to keep `path` exact.
  with open(path, "wb") as f:
    np.savez(f, **arrays)


def load_inception(path: str) -> tuple[InceptionV3, Params]:
  """Loads a weight file (see the module docstring); raises ValueError naming any bad array."""
  if not os.path.exists(path):
    raise FileNotFoundError(
        f"FID Inception weights {path!r} not found; convert pytorch-fid's "
        "pt_inception-2015-12-05-6726825d.pth with `python -m colorjax.prepare "
        f"--src=pt_inception-2015-12-05-6726825d.pth --fid_weights={path}`")
  with np.load(path, allow_pickle=False) as f:
    arrays = {name: f[name] for name in f.files}
  module = InceptionV3()
  return module, _check_and_unflatten(arrays, path)


@functools.partial(jax.jit, static_argnums=0)
def activations(module: InceptionV3, params: Params, rgb01: jnp.ndarray) -> jnp.ndarray:
  """Pool3 features of RGB images in [0, 1]: (B, H, W, 3) -> (B, 2048) float32 (jitted)."""
  return module.apply({"params": params}, rgb01)


def convert_torch_state_dict(state_dict: Mapping[str, np.ndarray]) -> Params:
  """pytorch-fid FIDInceptionA/C/E state dict (numpy arrays) -> validated Flax params.

  Conv weights (O, I, kh, kw) become kernels (kh, kw, I, O); BatchNorm weight / bias /
  running_mean / running_var become scale / bias / mean / var. The classifier (`fc.*`) and
  `num_batches_tracked` counters are dropped: FID stops at pool3.
  """
  bn_names = {"weight": "scale", "bias": "bias", "running_mean": "mean", "running_var": "var"}
  arrays = {}
  for key, value in state_dict.items():
    parts = key.split(".")
    if parts[0] in ("fc", "AuxLogits") or parts[-1] == "num_batches_tracked":
      continue
    value = np.asarray(value, np.float32)
    if len(parts) >= 3 and parts[-2] == "conv" and parts[-1] == "weight":
      arrays["/".join(parts[:-1] + ["kernel"])] = value.transpose(2, 3, 1, 0)
    elif len(parts) >= 3 and parts[-2] == "bn" and parts[-1] in bn_names:
      arrays["/".join(parts[:-1] + [bn_names[parts[-1]]])] = value
    else:
      raise ValueError(f"unrecognised entry {key!r} in the Inception state dict")
  return _check_and_unflatten(arrays, "state dict")


def convert_pytorch_fid(src: str, dst: str) -> None:
  """Converts pytorch-fid's `pt_inception-2015-12-05-*.pth` to this module's `.npz` format."""
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError("converting a .pth needs torch (CPU build is enough): "
                      "pip install torch") from e
  state_dict = torch.load(src, map_location="cpu", weights_only=True)
  numpy_dict = {k: v.detach().cpu().numpy() for k, v in state_dict.items()}
  save_params(dst, convert_torch_state_dict(numpy_dict))
