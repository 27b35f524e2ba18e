"""Schedules: tuned records from MetaSchedule databases, else default rules; and the tuner."""

from edgec.schedules.apply import Scheduled, apply_schedules
from edgec.schedules.default import default_schedule_pass, is_gpu

__all__ = ["Scheduled", "apply_schedules", "default_schedule_pass", "is_gpu"]
