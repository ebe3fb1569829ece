"""What the web pages show (see :mod:`.service`)."""

from registry.services.portal.service import Portal
from registry.services.portal.views import AccessView, ReportView, SentNotification, Trend

__all__ = ["AccessView", "Portal", "ReportView", "SentNotification", "Trend"]
