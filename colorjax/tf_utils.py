"""TensorFlow is only used by TFDS: keep it off the accelerators JAX uses."""


def hide_tf_from_accelerators() -> None:
  import tensorflow as tf
  tf.config.set_visible_devices([], "GPU")
