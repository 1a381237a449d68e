"""The glue test of the generated Python: the same scenario as the Kotlin test.

It checks that the module loads, calls, returns typed records, raises typed errors, calls
back with progress and talks to a real server over loopback; the network calls are awaited
with asyncio, a sync is cancelled by cancelling its task, and a login over HTTPS trusts a
county's own CA only when its certificate is passed. The rules themselves are tested in Rust.
Run by scripts/bindings-test.sh with PYTHONPATH at the generated module and OHASSIST_URL,
OHASSIST_USER, OHASSIST_PASSWORD (and OHASSIST_TLS_URL, OHASSIST_TLS_PASSWORD, OHASSIST_CA_PEM,
OHASSIST_ADMIN, OHASSIST_ADMIN_PASSWORD) set; without OHASSIST_URL the sync part is skipped,
and says so.
"""

import asyncio
import hashlib
import json
import os
import urllib.request
import sys
import tempfile
import threading
import time
import traceback

import ohassist_ffi as oh

CODE = "91350100M000100Y43"
COUNTY = "350121"
step = "start"


def expect_raises(cls, what, fn):
    try:
        fn()
    except cls as e:
        return e
    except Exception as e:  # noqa: BLE001 - the wrong kind is the failure being reported
        raise AssertionError(f"{step}: {what}: expected {cls.__name__}, got {e!r}") from e
    raise AssertionError(f"{step}: {what}: expected {cls.__name__}, nothing raised")


async def expect_raises_async(cls, what, coro):
    try:
        await coro
    except cls as e:
        return e
    except Exception as e:  # noqa: BLE001 - the wrong kind is the failure being reported
        raise AssertionError(f"{step}: {what}: expected {cls.__name__}, got {e!r}") from e
    raise AssertionError(f"{step}: {what}: expected {cls.__name__}, nothing raised")


def admin_devices(url):
    """The server's devices list as the admin reads it (raw HTTP, as the console's API)."""
    login = json.dumps({
        "username": os.environ["OHASSIST_ADMIN"], "password": os.environ["OHASSIST_ADMIN_PASSWORD"],
        "device_id": "python-glue-admin", "device_name": "",
    }).encode()
    req = urllib.request.Request(f"{url}/api/v1/login", login, {"content-type": "application/json"})
    token = json.load(urllib.request.urlopen(req))["token"]
    req = urllib.request.Request(f"{url}/api/v1/admin/devices", headers={"authorization": f"Bearer {token}"})
    return {d["id"]: d["name"] for d in json.load(urllib.request.urlopen(req))}


class Counter(oh.SyncProgressCallback):
    def __init__(self):
        self.calls = 0
        self.last = None

    def on_progress(self, progress):
        self.calls += 1
        self.last = progress


async def sync_once(store, label):
    counter = Counter()
    report = await store.sync(counter)
    assert counter.calls >= 2, f"{label}: progress callback called {counter.calls} times"
    assert counter.last.phase == "done", f"{label}: last phase {counter.last.phase}"
    return report


async def run(d):
    global step
    step = "open with a key"
    key = oh.generate_store_key()
    assert isinstance(key, bytes) and len(key) == 32
    a = oh.Store.open(os.path.join(d, "a.db"), key)
    assert a.device_id()
    expect_raises(oh.OhassistError.InvalidInput, "a short key", lambda: oh.Store.open(os.path.join(d, "x.db"), b"short"))

    step = "create enterprise"
    enterprise = oh.new_enterprise(CODE, "闽侯示范企业", oh.County(code=COUNTY, name="闽侯县"))
    enterprise.industry = oh.Industry.BUILDING_MATERIALS
    enterprise.assistance_years = {"2025": True}
    eid = a.create_enterprise(enterprise)
    assert eid == CODE, eid
    again = expect_raises(oh.OhassistError.AlreadyExists, "duplicate", lambda: a.create_enterprise(enterprise))
    assert again.id == CODE
    e = a.get_enterprise(eid)
    assert e.record.industry == oh.Industry.BUILDING_MATERIALS and e.version, e
    assert [s.id for s in a.search_enterprises("闽侯", 10)] == [CODE]

    step = "validation errors"
    enterprise.credit_code = "91350100M000100Y44"
    bad = expect_raises(oh.OhassistError.InvalidInput, "bad credit code", lambda: a.create_enterprise(enterprise))
    assert bad.field == "credit_code" and bad.reason_zh and bad.reason_en, bad
    post_id = oh.new_item_id()
    negative = oh.new_visit(eid, "2025-05-01")
    negative.hazard_identification.posts = {post_id: oh.Post(name="破碎", exposed_workers=-3)}
    neg = expect_raises(oh.OhassistError.InvalidInput, "negative count", lambda: a.create_visit(negative))
    assert neg.field == f"hazard_identification.posts.{post_id}.exposed_workers", neg.field
    expect_raises(oh.OhassistError.NotFound, "unknown visit", lambda: a.get_visit("nope"))

    step = "create visit"
    visit = oh.new_visit(eid, "2025-05-01")
    visit.hazard_identification.posts = {
        post_id: oh.Post(
            workplace="车间",
            name="破碎",
            exposed_workers=12,
            factors={oh.new_item_id(): oh.HazardFactor(category=oh.HazardCategory.DUST, name="矽尘")},
        )
    }
    visit.remediation.posts = {
        oh.new_item_id(): oh.OverLimitPost(post="破碎", factor="噪声", measured_value=92.5, limit=85.0, unit="dB(A)")
    }
    visit.training.sessions = {
        oh.new_item_id(): oh.TrainingSession(
            date="2025-05-01", audience=oh.TrainingAudience.WORKERS, attendees=30, organised_by_authority=True
        )
    }
    vid = a.create_visit(visit)
    v = a.get_visit(vid)
    assert list(v.record.remediation.posts.values())[0].measured_value == 92.5
    assert v.record.county_code == COUNTY
    assert v.pending_sync
    assert a.table1_status(eid, 2025).workers_trained

    step = "update, delete, restore"
    edited = v.record
    edited.notes = "初次帮扶"
    updated = a.update_visit(vid, edited, v.version)
    assert updated.record.notes == "初次帮扶" and updated.version != v.version
    assert a.delete_visit(vid).record.deleted
    assert a.list_visits(oh.VisitFilter(enterprise_id=eid)) == []
    assert not a.restore_visit(vid).record.deleted
    assert [s.id for s in a.list_visits(oh.VisitFilter(enterprise_id=eid))] == [vid]

    step = "timing"
    n = 200
    t0 = time.perf_counter()
    for i in range(n):
        tv = oh.new_visit(eid, "2025-05-02")
        tv.notes = f"timing {i}"
        a.create_visit(tv)
    print(f"python: create_visit {(time.perf_counter() - t0) / n * 1000:.3f} ms per call (average of {n})")

    url = os.environ.get("OHASSIST_URL")
    if not url:
        print("python: OHASSIST_URL not set: sync steps SKIPPED")
        return
    user, password = os.environ["OHASSIST_USER"], os.environ["OHASSIST_PASSWORD"]

    step = "sync before login"
    await expect_raises_async(oh.OhassistError.NotAuthorised, "sync without login", a.sync(Counter()))

    step = "login"
    lab = oh.LoginOptions(device_name="小米 14 · 王五", allow_http=True)
    await expect_raises_async(oh.OhassistError.NotAuthorised, "wrong password", a.login(url, user, "wrong-pw", lab))
    await expect_raises_async(
        oh.OhassistError.InvalidInput, "plain http refused", a.login(url, user, password, oh.LoginOptions())
    )
    info = await a.login(url, user, password, lab)
    assert info.role == "inspector" and info.org_unit == COUNTY, info
    assert admin_devices(url)[a.device_id()] == "小米 14 · 王五", "the server names the device as the app did"

    step = "sync a"
    assert a.pending_changes() > 0
    first = await sync_once(a, "first sync")
    assert first.changes_pushed > 0
    assert a.pending_changes() == 0, f"outbox not drained: {a.pending_changes()}"

    step = "second device"
    b = oh.Store.open(os.path.join(d, "b.db"), oh.generate_store_key())
    assert b.device_id() != a.device_id()
    await b.login(url, user, password, oh.LoginOptions(device_name="OPPO Find X7 · 赵六", allow_http=True))
    await sync_once(b, "b pulls")
    vb = b.get_visit(vid)
    assert vb.record.notes == "初次帮扶"

    step = "concurrent edits"
    va = a.get_visit(vid)
    va.record.notes = "A 的备注"
    a.update_visit(vid, va.record, va.version)
    vb.record.notes = "B 的备注"
    b.update_visit(vid, vb.record, vb.version)
    await sync_once(a, "a pushes")
    report = await sync_once(b, "b pushes and pulls")
    assert report.conflicted_records >= 1
    notes = [c for c in b.list_conflicts(vid) if c.path == "notes"]
    assert len(notes) == 1 and len(notes[0].values) == 2, b.list_conflicts(vid)
    assert (notes[0].label_zh, notes[0].label_en) == ("备注", "Notes"), notes[0]
    assert all(val.author.user == info.user_id for val in notes[0].values)
    assert any(r.id == vid and r.kind == oh.RecordKind.VISIT for r in b.conflicted_records())
    b.resolve_conflict(vid, "notes", '"A 和 B 的备注"')
    assert b.list_conflicts(vid) == [] and b.get_visit(vid).record.notes == "A 和 B 的备注"
    expect_raises(oh.OhassistError.Conflict, "resolving again", lambda: b.resolve_conflict(vid, "notes", '"x"'))

    step = "attachments"
    photo = os.path.join(d, "photo.jpg")
    data = os.urandom(300_000)
    with open(photo, "wb") as f:
        f.write(data)
    sha = hashlib.sha256(data).hexdigest()
    meta = oh.NewAttachment(kind=oh.AttachmentKind.PHOTO, media_type="image/jpeg", caption="警示标识")
    rec = a.add_attachment(vid, photo, meta)
    assert sha in rec.record.attachments
    assert [x.sha256 for x in a.list_attachments(vid)] == [sha]
    report = await sync_once(a, "a uploads the photo")
    assert report.attachments_uploaded == 1, report
    assert report.progress.attachment_bytes_up == len(data), report.progress
    await sync_once(b, "b learns of the photo")
    assert sha in b.get_visit(vid).record.attachments
    fetched = await b.fetch_attachment(vid, sha)
    assert isinstance(fetched, bytes) and fetched == data, "the fetched photo differs"

    step = "signature"
    sig_png = os.path.join(d, "signature.png")
    with open(sig_png, "wb") as f:
        f.write(b"\x89PNG\r\n signature strokes")
    try:
        a.sign_visit(vid, "王厂长", sig_png, "image/png", "")
        raise AssertionError("a signature without its time is refused")
    except oh.OhassistError.InvalidInput as e:
        assert e.field == "signature.signed_at", e
    signed = a.sign_visit(vid, "王厂长", sig_png, "image/png", "2025-05-20T10:00:00+08:00")
    assert signed.record.signature.signer_name == "王厂长"
    assert signed.record.signature.image_sha256 in signed.record.attachments

    step = "held record"
    # An enterprise of another county: the server refuses it alone; the phone keeps it held.
    far = oh.new_enterprise("91350122MA0000001K", "邻县企业", oh.County(code="350122", name="闽清县"))
    far.industry = oh.Industry.MINING
    a.create_enterprise(far)
    report = await sync_once(a, "a pushes a record of another county")
    assert report.newly_held == 1 and report.held_records == 1, report
    held = a.held_records()
    assert len(held) == 1 and held[0].doc_id == "91350122MA0000001K", held
    assert held[0].code == "out_of_scope" and held[0].kind == oh.RecordKind.ENTERPRISE, held
    assert held[0].reason_zh and held[0].reason_en and held[0].advice_zh, held
    assert held[0].pending_changes > 0 and a.pending_changes() > 0, "kept for later"
    # A discard needs the confirmation of the record's current version: never by accident.
    expect_raises(oh.OhassistError.NotDiscarded, "discard unconfirmed", lambda: a.discard_held(held[0].doc_id, ""))
    assert a.discard_confirmation(held[0].doc_id).startswith("discard:"), "a confirmation to show"
    assert a.discarded_records() == [] and len(a.held_records()) == 1, "nothing discarded"

    step = "cancel a sync by cancelling its task"
    started, release = threading.Event(), threading.Event()

    class Blocking(oh.SyncProgressCallback):
        def on_progress(self, progress):
            started.set()
            release.wait()  # holds the sync at its first step

    pending_ids = [a.create_visit(oh.new_visit(eid, "2025-06-01")) for _ in range(5)]
    pending = a.pending_changes()
    task = asyncio.create_task(a.sync(Blocking()))
    assert await asyncio.get_running_loop().run_in_executor(None, started.wait, 30), "the sync started"
    task.cancel()
    release.set()
    try:
        await task
        raise AssertionError("the cancelled task finished")
    except asyncio.CancelledError:
        pass
    assert a.pending_changes() == pending, "the cancelled sync pushed nothing"
    await sync_once(a, "the next sync completes")
    await sync_once(b, "b after the next sync")
    on_b = {v.id for v in b.list_visits(oh.VisitFilter(enterprise_id=eid))}
    assert set(pending_ids) <= on_b, "no visit of the cancelled sync was lost"

    step = "logout"
    await a.logout()
    await expect_raises_async(oh.OhassistError.NotAuthorised, "sync after logout", a.sync(Counter()))

    step = "a county's own CA"
    tls_url = os.environ["OHASSIST_TLS_URL"]
    assert tls_url.startswith("https://"), tls_url
    c = oh.Store.open(os.path.join(d, "c.db"), oh.generate_store_key())
    untrusted = await expect_raises_async(
        oh.OhassistError.InvalidInput, "the county's CA not passed", c.login(tls_url, user, os.environ["OHASSIST_TLS_PASSWORD"], oh.LoginOptions())
    )
    assert untrusted.field == "server_url" and "certificate" in untrusted.reason_en, untrusted
    with open(os.environ["OHASSIST_CA_PEM"]) as f:
        ca = f.read()
    info = await c.login(
        tls_url, user, os.environ["OHASSIST_TLS_PASSWORD"], oh.LoginOptions(device_name="县局测试机", root_certificate_pem=ca)
    )
    assert info.org_unit == COUNTY, info
    tls_enterprise = oh.new_enterprise(CODE, "闽侯示范企业", oh.County(code=COUNTY, name="闽侯县"))
    tls_enterprise.industry = oh.Industry.MINING
    c.create_enterprise(tls_enterprise)
    report = await sync_once(c, "a sync over HTTPS trusts the CA given at login")
    assert report.changes_pushed > 0 and c.pending_changes() == 0, report
    del c

    step = "reopen with the key, then a wrong key"
    device = a.device_id()
    del a
    a = oh.Store.open(os.path.join(d, "a.db"), key)
    assert a.device_id() == device and a.get_enterprise(CODE).record.name == "闽侯示范企业"
    del a
    before = open(os.path.join(d, "a.db"), "rb").read()
    wrong = bytes(b ^ 0xFF for b in key)
    expect_raises(oh.OhassistError.WrongKey, "a wrong key", lambda: oh.Store.open(os.path.join(d, "a.db"), wrong))
    assert open(os.path.join(d, "a.db"), "rb").read() == before, "a wrong key changed the file"
    assert CODE.encode() not in before and "闽侯示范企业".encode() not in before, "plaintext in the store file"


def main():
    with tempfile.TemporaryDirectory(prefix="ohassist-py") as d:
        try:
            asyncio.run(run(d))
        except BaseException:  # noqa: BLE001 - any failure fails the test loudly
            print(f"FAILED at step '{step}'", file=sys.stderr)
            traceback.print_exc()
            sys.exit(1)
    print("python: all steps passed")


if __name__ == "__main__":
    main()
