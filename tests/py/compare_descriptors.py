"""Compares the gRPC API Pemba declares (its compiled descriptor set, a file given as the first
argument) with the descriptors shipped in the official Python `authzed` package: every service,
method, message, field and enum Pemba declares in `authzed.api.v1` must exist there with the same
names, numbers, types, labels and streaming; so must its `google.rpc` messages in the
googleapis-common-protos package the client depends on. Prints each difference; exits 1 if there is any."""

import sys

from google.protobuf import descriptor_pb2
from google.rpc import error_details_pb2, status_pb2
from authzed.api.v1 import (
    core_pb2,
    debug_pb2,
    error_reason_pb2,
    permission_service_pb2,
    schema_service_pb2,
    watch_service_pb2,
)


def index(files):
    """Flattens files into {full name: descriptor proto} for messages, enums and services."""
    out = {}

    def message(prefix, m):
        name = f"{prefix}.{m.name}"
        out[name] = ("message", m)
        for n in m.nested_type:
            message(name, n)
        for e in m.enum_type:
            out[f"{name}.{e.name}"] = ("enum", e)

    for f in files:
        pkg = "." + f.package
        for m in f.message_type:
            message(pkg, m)
        for e in f.enum_type:
            out[f"{pkg}.{e.name}"] = ("enum", e)
        for s in f.service:
            out[f"{pkg}.{s.name}"] = ("service", s)
    return out


def field_facts(m, f):
    oneof = m.oneof_decl[f.oneof_index].name if f.HasField("oneof_index") and not f.proto3_optional else None
    return (f.number, f.type, f.label, f.type_name, oneof, f.proto3_optional)


def main():
    ours = descriptor_pb2.FileDescriptorSet.FromString(open(sys.argv[1], "rb").read())
    ours = [f for f in ours.file if f.package in ("authzed.api.v1", "google.rpc")]
    theirs = [
        descriptor_pb2.FileDescriptorProto.FromString(m.DESCRIPTOR.serialized_pb)
        for m in (core_pb2, debug_pb2, error_reason_pb2, permission_service_pb2, schema_service_pb2, watch_service_pb2)
    ] + [
        descriptor_pb2.FileDescriptorProto.FromString(m.DESCRIPTOR.serialized_pb)
        for m in (status_pb2, error_details_pb2)
    ]
    a, b = index(ours), index(theirs)
    problems = []
    checked = 0
    for name, (kind, d) in sorted(a.items()):
        if name not in b or b[name][0] != kind:
            problems.append(f"{kind} {name}: not in the official package")
            continue
        other = b[name][1]
        if kind == "message":
            theirs_fields = {f.name: f for f in other.field}
            for f in d.field:
                checked += 1
                g = theirs_fields.get(f.name)
                if g is None:
                    problems.append(f"field {name}.{f.name}: not in the official package")
                elif field_facts(d, f) != field_facts(other, g):
                    problems.append(f"field {name}.{f.name}: {field_facts(d, f)} != official {field_facts(other, g)}")
        elif kind == "enum":
            values = {v.name: v.number for v in other.value}
            for v in d.value:
                checked += 1
                if values.get(v.name) != v.number:
                    problems.append(f"enum value {name}.{v.name} = {v.number}: official {values.get(v.name)}")
        else:
            methods = {m.name: m for m in other.method}
            for m in d.method:
                checked += 1
                o = methods.get(m.name)
                facts = lambda x: (x.input_type, x.output_type, x.client_streaming, x.server_streaming)
                if o is None:
                    problems.append(f"method {name}.{m.name}: not in the official package")
                elif facts(m) != facts(o):
                    problems.append(f"method {name}.{m.name}: {facts(m)} != official {facts(o)}")
    for p in problems:
        print(p)
    print(f"{checked} fields, enum values and methods compared, {len(problems)} differences")
    sys.exit(1 if problems or checked == 0 else 0)


main()
