"""Orchestration: the campaign engine, its policies, the outbox worker and the report."""

from journeymap.orchestration.clock import Clock, FakeClock, SystemClock
from journeymap.orchestration.engine import CampaignEngine, Entry, TriggerEvent
from journeymap.orchestration.gate import send_id
from journeymap.orchestration.loop import LoopRecorder, TrackingError
from journeymap.orchestration.policies import PolicySettings
from journeymap.orchestration.report import CampaignReport, campaign_report
from journeymap.orchestration.simulate import SimulationResult, preview, simulate
from journeymap.orchestration.worker import OutboxWorker, feedback_table

__all__ = [
    "CampaignEngine",
    "CampaignReport",
    "Clock",
    "Entry",
    "FakeClock",
    "LoopRecorder",
    "OutboxWorker",
    "PolicySettings",
    "SimulationResult",
    "SystemClock",
    "TrackingError",
    "TriggerEvent",
    "campaign_report",
    "feedback_table",
    "preview",
    "send_id",
    "simulate",
]
