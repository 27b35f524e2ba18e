"""Schedules: tuned records from MetaSchedule databases, else default rules."""

from edgec.schedules.default import default_schedule_pass, is_gpu

__all__ = ["default_schedule_pass", "is_gpu"]
