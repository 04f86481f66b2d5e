"""Routes of the notifications API: webhooks (included by api.py)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
