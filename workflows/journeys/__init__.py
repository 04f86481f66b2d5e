"""The PatientJourney workflow: one per patient, following every referral of their journey."""

from shared.identifiers import JOURNEYS_TASK_QUEUE as TASK_QUEUE
from shared.identifiers import journey_workflow_id as workflow_id

__all__ = ["TASK_QUEUE", "workflow_id"]
