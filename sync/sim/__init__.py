"""A simulator of Tanmarket's customer-file endpoint, for tests, the demo and benchmarks."""

from sync.domain.chinatime import CHINA_TZ
from sync.domain.ids import (
    ID_EPOCH,
    ID_UNITS_PER_SECOND,
    id_create_time,
    id_time,
    make_id,
)
from sync.sim.config import SimConfig
from sync.sim.dataset import (
    DEFAULT_START,
    HOSTILE_KINDS,
    POISON_KINDS,
    UNUSABLE_ID_KINDS,
    PoisonRecord,
    SimCustomer,
    SimDataset,
    is_usable_id,
)
from sync.sim.faults import FAULT_KINDS, FaultPolicy
from sync.sim.runner import SimThread
from sync.sim.server import ENDPOINT, Simulator
from sync.sim.stats import SimStats

__all__ = [
    "CHINA_TZ",
    "DEFAULT_START",
    "ENDPOINT",
    "FAULT_KINDS",
    "HOSTILE_KINDS",
    "ID_EPOCH",
    "ID_UNITS_PER_SECOND",
    "POISON_KINDS",
    "UNUSABLE_ID_KINDS",
    "FaultPolicy",
    "PoisonRecord",
    "SimConfig",
    "SimCustomer",
    "SimDataset",
    "SimStats",
    "SimThread",
    "Simulator",
    "id_create_time",
    "id_time",
    "is_usable_id",
    "make_id",
]
