"""The official Python `authzed` client against a running `pemba serve`.

Usage: client_e2e.py HOST:PORT
The server must know tenant `acme` with key `key-acme` and tenant `globex` with key `key-globex`,
both empty. Nothing here is Pemba-specific: it is what a SpiceDB user's code does. Prints one line
per step and `all steps passed` at the end; any failure raises (exit status 1).
"""

import sys
import threading
import time

import grpc
from google.protobuf.struct_pb2 import Struct
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2, status_pb2
from grpcutil import insecure_bearer_token_credentials

from authzed.api.v1 import (
    CheckBulkPermissionsRequest,
    CheckBulkPermissionsRequestItem,
    CheckPermissionRequest,
    CheckPermissionResponse,
    Client,
    Consistency,
    ContextualizedCaveat,
    DeleteRelationshipsRequest,
    ExpandPermissionTreeRequest,
    LookupResourcesRequest,
    LookupSubjectsRequest,
    ObjectReference,
    ReadRelationshipsRequest,
    ReadSchemaRequest,
    Relationship,
    RelationshipFilter,
    RelationshipUpdate,
    SubjectReference,
    WatchRequest,
    WriteRelationshipsRequest,
    WriteSchemaRequest,
)

SCHEMA = """
use expiration

definition user {}

caveat on_network(ip ipaddress, net string) {
  ip.in_cidr(net)
}

definition document {
  relation viewer: user | user with on_network | user with expiration
  permission view = viewer
}
"""

HAS = CheckPermissionResponse.PERMISSIONSHIP_HAS_PERMISSION
NO = CheckPermissionResponse.PERMISSIONSHIP_NO_PERMISSION
CONDITIONAL = CheckPermissionResponse.PERMISSIONSHIP_CONDITIONAL_PERMISSION


def step(name):
    print(f"step: {name}", flush=True)


def expect_error(code, fn):
    try:
        fn()
    except grpc.RpcError as e:
        assert e.code() == code, f"expected {code}, got {e.code()}: {e.details()}"
        return e
    raise AssertionError(f"expected {code}, the call succeeded")


def error_reason(e):
    """The ErrorInfo reason in a failed call's `grpc-status-details-bin`, as SpiceDB clients read it."""
    for key, value in e.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            for any_ in status.details:
                info = error_details_pb2.ErrorInfo()
                if any_.Unpack(info):
                    assert info.domain == "authzed.com", info
                    return info.reason
    return None


def doc(i):
    return ObjectReference(object_type="document", object_id=i)


def user(i):
    return SubjectReference(object=ObjectReference(object_type="user", object_id=i))


def struct(**kv):
    s = Struct()
    s.update(kv)
    return s


def viewer(d, u, caveat=None, expires_at=None):
    r = Relationship(resource=doc(d), relation="viewer", subject=user(u))
    if caveat is not None:
        r.optional_caveat.CopyFrom(caveat)
    if expires_at is not None:
        r.optional_expires_at.CopyFrom(expires_at)
    return r


def touch(r):
    return RelationshipUpdate(operation=RelationshipUpdate.Operation.OPERATION_TOUCH, relationship=r)


def fresh(token):
    return Consistency(at_least_as_fresh=token)


def main(addr):
    acme = Client(addr, insecure_bearer_token_credentials("key-acme"))
    globex = Client(addr, insecure_bearer_token_credentials("key-globex"))
    stranger = Client(addr, insecure_bearer_token_credentials("not-a-key"))

    step("a wrong key is UNAUTHENTICATED")
    expect_error(grpc.StatusCode.UNAUTHENTICATED, lambda: stranger.ReadSchema(ReadSchemaRequest()))

    step("schema written and read back")
    written = acme.WriteSchema(WriteSchemaRequest(schema=SCHEMA)).written_at
    assert written.token, "WriteSchema returns a token"
    text = acme.ReadSchema(ReadSchemaRequest()).schema_text
    assert "definition document" in text and "caveat on_network" in text, text

    step("watch from the schema's token, in the background")
    watched = []
    ready = threading.Event()

    def watch():
        stream = acme.Watch(WatchRequest(optional_object_types=["document"], optional_start_cursor=written))
        ready.set()
        try:
            for resp in stream:
                watched.extend(resp.updates)
                if watched:
                    stream.cancel()
                    return
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.CANCELLED:
                raise

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    ready.wait(10)

    step("writes with a caveat and an expiration")
    in_an_hour = Timestamp()
    in_an_hour.FromSeconds(int(time.time()) + 3600)
    network = ContextualizedCaveat(caveat_name="on_network", context=struct(net="10.0.0.0/8"))
    updates = [
        touch(viewer("doc1", "alice")),
        touch(viewer("doc2", "bob", caveat=network)),
        touch(viewer("doc3", "dave", expires_at=in_an_hour)),
    ] + [touch(viewer(f"doc{i}", "alice")) for i in range(10, 25)]
    token = acme.WriteRelationships(WriteRelationshipsRequest(updates=updates)).written_at
    assert token.token

    def check(d, u, context=None):
        req = CheckPermissionRequest(consistency=fresh(token), resource=doc(d), permission="view", subject=user(u))
        if context is not None:
            req.context.CopyFrom(context)
        return acme.CheckPermission(req)

    step("check: allowed, denied, conditional, then allowed with context")
    assert check("doc1", "alice").permissionship == HAS
    assert check("doc2", "alice").permissionship == NO
    conditional = check("doc2", "bob")
    assert conditional.permissionship == CONDITIONAL, conditional
    assert list(conditional.partial_caveat_info.missing_required_context) == ["ip"], conditional
    assert check("doc2", "bob", struct(ip="10.1.2.3")).permissionship == HAS
    assert check("doc2", "bob", struct(ip="192.168.1.1")).permissionship == NO
    expiring = check("doc3", "dave")
    assert expiring.permissionship == HAS
    assert expiring.HasField("optional_expires_at"), expiring
    assert expiring.optional_expires_at.seconds == in_an_hour.seconds, expiring
    assert not check("doc1", "alice").HasField("optional_expires_at")

    step("check with an invalid field is INVALID_ARGUMENT naming it")
    e = expect_error(grpc.StatusCode.INVALID_ARGUMENT, lambda: check("bad id!", "alice"))
    assert "object_id" in e.details(), e.details()

    step("an unknown permission carries SpiceDB's ErrorInfo reason")
    e = expect_error(grpc.StatusCode.FAILED_PRECONDITION, lambda: acme.CheckPermission(
        CheckPermissionRequest(consistency=fresh(token), resource=doc("doc1"), permission="nope", subject=user("alice"))
    ))
    assert error_reason(e) == "ERROR_REASON_UNKNOWN_RELATION_OR_PERMISSION", error_reason(e)

    step("CheckBulkPermissions with a per-item error")
    items = [
        CheckBulkPermissionsRequestItem(resource=doc("doc1"), permission="view", subject=user("alice")),
        CheckBulkPermissionsRequestItem(resource=doc("doc2"), permission="view", subject=user("alice")),
        CheckBulkPermissionsRequestItem(resource=doc("doc1"), permission="nope", subject=user("alice")),
    ]
    pairs = acme.CheckBulkPermissions(CheckBulkPermissionsRequest(consistency=fresh(token), items=items)).pairs
    assert len(pairs) == 3
    assert pairs[0].item.permissionship == HAS and pairs[1].item.permissionship == NO
    assert pairs[2].HasField("error") and pairs[2].error.code != 0 and "nope" in pairs[2].error.message, pairs[2]
    assert pairs[0].request.resource.object_id == "doc1"
    info = error_details_pb2.ErrorInfo()
    assert pairs[2].error.details and pairs[2].error.details[0].Unpack(info), pairs[2]
    assert info.reason == "ERROR_REASON_UNKNOWN_RELATION_OR_PERMISSION", info

    step("LookupResources in pages of 5")
    expected = {"doc1"} | {f"doc{i}" for i in range(10, 25)}
    seen, cursor, pages = [], None, 0
    while True:
        req = LookupResourcesRequest(
            consistency=fresh(token),
            resource_object_type="document",
            permission="view",
            subject=user("alice"),
            optional_limit=5,
        )
        if cursor is not None:
            req.optional_cursor.CopyFrom(cursor)
        page = list(acme.LookupResources(req))
        pages += 1
        assert len(page) <= 5 and pages <= 10, (len(page), pages)
        if not page:
            break
        for r in page:
            assert r.after_result_cursor.token, "every result carries a cursor"
            seen.append(r.resource_object_id)
        cursor = page[-1].after_result_cursor
        if len(page) < 5:
            break
    assert sorted(seen) == sorted(expected) and len(seen) == len(set(seen)), seen
    everything = list(
        acme.LookupResources(
            LookupResourcesRequest(
                consistency=fresh(token), resource_object_type="document", permission="view", subject=user("bob")
            )
        )
    )
    assert [(r.resource_object_id, r.permissionship) for r in everything] == [
        ("doc2", 2)  # LOOKUP_PERMISSIONSHIP_CONDITIONAL_PERMISSION
    ], everything

    step("LookupSubjects")
    subjects = list(
        acme.LookupSubjects(
            LookupSubjectsRequest(
                consistency=fresh(token), resource=doc("doc1"), permission="view", subject_object_type="user"
            )
        )
    )
    assert [s.subject.subject_object_id for s in subjects] == ["alice"], subjects

    step("ExpandPermissionTree")
    tree = acme.ExpandPermissionTree(
        ExpandPermissionTreeRequest(consistency=fresh(token), resource=doc("doc2"), permission="view")
    )
    assert "bob" in str(tree.tree_root), tree

    step("ReadRelationships with an id prefix")
    read = list(
        acme.ReadRelationships(
            ReadRelationshipsRequest(
                consistency=fresh(token),
                relationship_filter=RelationshipFilter(resource_type="document", optional_resource_id_prefix="doc1"),
            )
        )
    )
    ids = sorted(r.relationship.resource.object_id for r in read)
    assert ids == sorted(["doc1"] + [f"doc{i}" for i in range(10, 20)]), ids
    caveated = list(
        acme.ReadRelationships(
            ReadRelationshipsRequest(
                consistency=fresh(token),
                relationship_filter=RelationshipFilter(resource_type="document", optional_resource_id="doc2"),
            )
        )
    )
    assert len(caveated) == 1 and caveated[0].relationship.optional_caveat.caveat_name == "on_network", caveated

    step("Watch received the write")
    watcher.join(10)
    assert not watcher.is_alive(), "the watch received nothing within 10 s"
    assert any(u.relationship.resource.object_id == "doc1" for u in watched), watched

    step("DeleteRelationships")
    deleted = acme.DeleteRelationships(
        DeleteRelationshipsRequest(
            relationship_filter=RelationshipFilter(resource_type="document", optional_resource_id="doc1")
        )
    ).deleted_at
    req = CheckPermissionRequest(
        consistency=fresh(deleted), resource=doc("doc1"), permission="view", subject=user("alice")
    )
    assert acme.CheckPermission(req).permissionship == NO

    step("a second tenant sees nothing of the first")
    expect_error(grpc.StatusCode.INVALID_ARGUMENT, lambda: globex.CheckPermission(req))
    globex.WriteSchema(WriteSchemaRequest(schema=SCHEMA))
    full = Consistency(fully_consistent=True)
    assert (
        list(
            globex.ReadRelationships(
                ReadRelationshipsRequest(
                    consistency=full, relationship_filter=RelationshipFilter(resource_type="document")
                )
            )
        )
        == []
    )
    assert (
        list(
            globex.LookupResources(
                LookupResourcesRequest(
                    consistency=full, resource_object_type="document", permission="view", subject=user("alice")
                )
            )
        )
        == []
    )
    other = globex.CheckPermission(
        CheckPermissionRequest(consistency=full, resource=doc("doc10"), permission="view", subject=user("alice"))
    )
    assert other.permissionship == NO

    print("all steps passed", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
