"""Optimizers and learning-rate schedules from `config.optimizer`."""

from __future__ import annotations

from typing import Any

import optax


def learning_rate_schedule(opt: Any, base_lr: float, num_steps: int) -> optax.Schedule:
  if opt.schedule == "constant":
    schedule = optax.constant_schedule(base_lr)
  elif opt.schedule == "linear_decay":  # pix2pix: constant, then linearly to zero.
    start = int(num_steps * opt.decay_start_fraction)
    schedule = optax.join_schedules(
        [optax.constant_schedule(base_lr),
         optax.linear_schedule(base_lr, 0.0, max(num_steps - start, 1))], [start])
  elif opt.schedule == "cosine":
    schedule = optax.cosine_decay_schedule(base_lr, max(num_steps - opt.warmup_steps, 1))
  else:
    raise ValueError(f"unknown optimizer.schedule {opt.schedule!r}; "
                     "valid: constant, linear_decay, cosine")
  if opt.warmup_steps > 0:
    warmup = optax.linear_schedule(0.0, base_lr, opt.warmup_steps)
    schedule = optax.join_schedules([warmup, schedule], [opt.warmup_steps])
  return schedule


def make_optimizer(opt: Any, schedule: optax.Schedule) -> optax.GradientTransformation:
  if opt.name == "adam":
    return optax.adam(schedule, b1=opt.b1, b2=opt.b2)
  if opt.name == "rmsprop":  # WGAN with weight clipping (Arjovsky et al.).
    return optax.rmsprop(schedule)
  raise ValueError(f"unknown optimizer.name {opt.name!r}; valid: adam, rmsprop")


def make_schedules(config: Any) -> tuple[optax.Schedule, optax.Schedule]:
  """(generator, discriminator) learning-rate schedules."""
  opt = config.optimizer
  d_lr = opt.learning_rate if opt.d_learning_rate < 0 else opt.d_learning_rate
  return (learning_rate_schedule(opt, opt.learning_rate, config.num_train_steps),
          learning_rate_schedule(opt, d_lr, config.num_train_steps))
