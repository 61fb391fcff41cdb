"""The embedded local platform: SeaweedFS (S3) and Tansu (Kafka) on loopback; Triton joins in serving."""

from tagwatch.stack.check import CheckResult, run_checks
from tagwatch.stack.manager import RestartResult, Stack, ServiceStatus, UpResult
from tagwatch.stack.private import private_stack
from tagwatch.stack.state import with_stack_endpoints

__all__ = ["CheckResult", "RestartResult", "ServiceStatus", "Stack", "UpResult", "private_stack", "run_checks", "with_stack_endpoints"]
