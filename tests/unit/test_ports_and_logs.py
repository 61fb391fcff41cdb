import logging
import socket

import pytest

from tagwatch.errors import PortInUseError
from tagwatch.logs import MASK, RedactSecrets
from tagwatch.settings import StackSettings
from tagwatch.stack.ports import StackPorts, ensure_ports_free, is_port_free


def test_free_ports_are_distinct_and_free():
    ports = StackPorts.pick_free("127.0.0.1")
    values = list(ports.model_dump().values())
    assert len(set(values)) == len(values) == 14  # 10 SeaweedFS, 1 Kafka, 3 Triton
    assert all(is_port_free("127.0.0.1", p) for p in values)


def test_fixed_ports_follow_seaweedfs_grpc_convention():
    ports = StackPorts.from_settings(StackSettings(s3_port=18333, kafka_port=19092))
    assert (ports.s3, ports.s3_grpc, ports.kafka) == (18333, 28333, 19092)
    assert "kafka" not in ports.seaweedfs() and "triton_http" not in ports.seaweedfs()
    assert (ports.triton_http, ports.triton_grpc, ports.triton_metrics) == (8000, 8001, 8002)


def test_taken_port_names_the_setting_to_change():
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        assert not is_port_free("127.0.0.1", port)
        with pytest.raises(PortInUseError) as info:
            ensure_ports_free("127.0.0.1", {"kafka": port}, "tansu")
        assert str(port) in info.value.message
        assert "TAGWATCH_STACK__KAFKA_PORT" in info.value.hint
        assert info.value.exit_code == 3
    finally:
        holder.close()


def test_redaction_masks_message_args_and_exception():
    redactor = RedactSecrets(["s3cr3t-value", ""])
    record = logging.LogRecord("tagwatch", logging.ERROR, __file__, 1, "url=%s", ("http://u:s3cr3t-value@h",), None)
    try:
        raise RuntimeError("boom s3cr3t-value")
    except RuntimeError:
        import sys

        record.exc_info = sys.exc_info()
    assert redactor.filter(record)
    assert record.getMessage() == f"url=http://u:{MASK}@h"
    assert "s3cr3t-value" not in record.exc_text and MASK in record.exc_text
