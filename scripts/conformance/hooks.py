"""Schemathesis hooks for ohassist: the sync bodies are CBOR, gzip-compressed.

With these, schemathesis generates push and pull bodies from the document's schemas (the
decoded messages) and sends them as the phones do, and validates the decoded answers against
the response schemas: no operation is left out of generation.
"""

import gzip

import cbor2
import schemathesis
from schemathesis.transport.serialization import Binary


def _to_wire(value):
    # `format: binary` fields are CBOR byte strings on the wire.
    if isinstance(value, Binary):
        return bytes(value.data)
    if isinstance(value, dict):
        return {k: (_bytes_field(v) if k == "bytes" else _to_wire(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_wire(v) for v in value]
    # JSON Schema's integer 3.0 is CBOR's integer 3 (CBOR, unlike JSON, tells them apart).
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return int(value)
    return value


def _bytes_field(value):
    if isinstance(value, Binary):
        return bytes(value.data)
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    return _to_wire(value)


def _from_wire(value):
    # Byte strings are checked as the document's `format: binary` strings.
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {k: _from_wire(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_wire(v) for v in value]
    return value


@schemathesis.serializer("application/cbor")
def cbor_body(ctx, value):
    return gzip.compress(cbor2.dumps(_to_wire(value)))


@schemathesis.deserializer("application/cbor")
def cbor_answer(ctx, response):
    body = response.content
    # The transport already undid `Content-Encoding: gzip`; a body still gzipped is undone here.
    if body[:2] == b"\x1f\x8b":
        body = gzip.decompress(body)
    return _from_wire(cbor2.loads(body))


@schemathesis.serializer("application/offset+octet-stream")
def raw_chunk(ctx, value):
    # An attachment chunk: the bytes as they are.
    if isinstance(value, Binary):
        return bytes(value.data)
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8", "surrogatepass")
