"""The priority task engine: tasks, clocks, workers and lanes."""

from .clock import Clock, FakeClock, SystemClock
from .core import DEFAULT_POLICY, Engine, EngineStopped, Lane, Policy
from .task import Duplicate, Periodic, RunResult, Task, TaskClass
from .workers import Outcome, PoolClosed, PoolFull, WorkerPool

__all__ = [
    "DEFAULT_POLICY",
    "Clock",
    "Duplicate",
    "Engine",
    "EngineStopped",
    "FakeClock",
    "Lane",
    "Outcome",
    "Periodic",
    "Policy",
    "PoolClosed",
    "PoolFull",
    "RunResult",
    "SystemClock",
    "Task",
    "TaskClass",
    "WorkerPool",
]
