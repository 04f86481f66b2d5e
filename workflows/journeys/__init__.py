"""The PatientJourney workflow: one per patient, following every referral of their journey."""

TASK_QUEUE = "waymark-journeys"


def workflow_id(patient_id: str) -> str:
    return f"journey-{patient_id}"
