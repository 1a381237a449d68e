// The glue test of the generated Kotlin: it loads, calls, gets typed records back, receives
// typed errors and sync callbacks, and talks to a real server over loopback. The rules
// themselves (validation, merge, Table 1) are tested in Rust; this only checks they arrive.
// The network calls are `suspend`: called from Dispatchers.IO, a sync as a Flow
// (bindings/kotlin/OhassistFlow.kt), and a sync cancelled by cancelling its coroutine.
//
// Run by scripts/bindings-test.sh with OHASSIST_URL, OHASSIST_USER, OHASSIST_PASSWORD set;
// without OHASSIST_URL the sync part is skipped (and says so).

import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.coroutineScope
import kotlinx.coroutines.flow.toList
import kotlinx.coroutines.launch
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withContext
import org.ohassist.ffi.*
import java.nio.file.Files
import java.util.concurrent.CountDownLatch
import java.util.concurrent.TimeUnit
import java.util.concurrent.atomic.AtomicInteger
import kotlin.system.exitProcess

const val CODE = "91350100M000100Y43"
const val COUNTY = "350121"

var step = "start"

fun check(cond: Boolean, what: String) {
    if (!cond) throw AssertionError("$step: $what")
}

inline fun <reified E : Throwable> expectThrows(what: String, block: () -> Unit): E {
    try {
        block()
    } catch (e: Throwable) {
        if (e is E) return e
        throw AssertionError("$step: $what: expected ${E::class.simpleName}, got $e")
    }
    throw AssertionError("$step: $what: expected ${E::class.simpleName}, nothing thrown")
}

class Counter : SyncProgressCallback {
    val calls = AtomicInteger()
    @Volatile var last: SyncProgress? = null
    override fun onProgress(progress: SyncProgress) {
        calls.incrementAndGet()
        last = progress
    }
}

suspend fun syncOnce(store: Store, label: String): SyncReport {
    val counter = Counter()
    val report = store.sync(counter)
    check(counter.calls.get() >= 2, "$label: progress callback called ${counter.calls.get()} times")
    check(counter.last?.phase == "done", "$label: last progress phase ${counter.last?.phase}")
    return report
}

fun main() {
    val dir = Files.createTempDirectory("ohassist-kt")
    try {
        runBlocking { withContext(Dispatchers.IO) { run(dir.toString()) } }
    } catch (e: Throwable) {
        System.err.println("FAILED at step '$step': $e")
        e.printStackTrace()
        exitProcess(1)
    } finally {
        dir.toFile().deleteRecursively()
    }
    println("kotlin: all steps passed")
}

suspend fun run(dir: String) {
    step = "open with a key"
    val key = generateStoreKey()
    check(key.size == 32, "a 32-byte key")
    val a = Store.open("$dir/a.db", key)
    check(a.deviceId().isNotEmpty(), "device id")
    expectThrows<OhassistException.InvalidInput>("a short key") { Store.open("$dir/x.db", ByteArray(5)) }

    step = "create enterprise"
    val enterprise = newEnterprise(CODE, "闽侯示范企业", County(code = COUNTY, name = "闽侯县"))
        .copy(industry = Industry.BUILDING_MATERIALS, assistanceYears = mapOf("2025" to true))
    val eid = a.createEnterprise(enterprise)
    check(eid == CODE, "enterprise id $eid")
    val again = expectThrows<OhassistException.AlreadyExists>("duplicate credit code") { a.createEnterprise(enterprise) }
    check(again.id == CODE, "AlreadyExists names the record")
    val e = a.getEnterprise(eid)
    check(e.record.industry == Industry.BUILDING_MATERIALS && e.version.isNotEmpty(), "enterprise read back: $e")
    check(a.searchEnterprises("闽侯", 10u).single().id == CODE, "search by name")

    step = "validation errors"
    val bad = expectThrows<OhassistException.InvalidInput>("bad credit code") {
        a.createEnterprise(enterprise.copy(creditCode = "91350100M000100Y44"))
    }
    check(bad.field == "credit_code" && bad.reasonZh.isNotEmpty() && bad.reasonEn.isNotEmpty(), "field of $bad")
    val postId = newItemId()
    val negative = newVisit(eid, "2025-05-01").copy(
        hazardIdentification = HazardIdentification(posts = mapOf(postId to Post(name = "破碎", exposedWorkers = -3))),
    )
    val neg = expectThrows<OhassistException.InvalidInput>("negative count") { a.createVisit(negative) }
    check(neg.field == "hazard_identification.posts.$postId.exposed_workers", "field ${neg.field}")
    expectThrows<OhassistException.NotFound>("unknown visit") { a.getVisit("nope") }

    step = "create visit"
    val visit = newVisit(eid, "2025-05-01").copy(
        hazardIdentification = HazardIdentification(
            posts = mapOf(
                postId to Post(
                    workplace = "车间",
                    name = "破碎",
                    exposedWorkers = 12,
                    factors = mapOf(newItemId() to HazardFactor(category = HazardCategory.DUST, name = "矽尘")),
                ),
            ),
        ),
        remediation = Remediation(
            posts = mapOf(newItemId() to OverLimitPost(post = "破碎", factor = "噪声", measuredValue = 92.5, limit = 85.0, unit = "dB(A)")),
        ),
        training = TrainingSection(
            sessions = mapOf(
                newItemId() to TrainingSession(
                    date = "2025-05-01",
                    audience = TrainingAudience.WORKERS,
                    attendees = 30,
                    organisedByAuthority = true,
                ),
            ),
        ),
    )
    val vid = a.createVisit(visit)
    val v = a.getVisit(vid)
    check(v.record.remediation.posts.values.single().measuredValue == 92.5, "Option<f64> round trip")
    check(v.record.countyCode == COUNTY, "county taken from the enterprise")
    check(v.pendingSync, "new visit pending sync")
    check(a.table1Status(eid, 2025).workersTrained, "table 1 sees the training")

    step = "update, delete, restore"
    val updated = a.updateVisit(vid, v.record.copy(notes = "初次帮扶"), v.version)
    check(updated.record.notes == "初次帮扶" && updated.version != v.version, "update")
    check(a.deleteVisit(vid).record.deleted, "delete")
    check(a.listVisits(VisitFilter(enterpriseId = eid)).isEmpty(), "deleted visit hidden")
    check(!a.restoreVisit(vid).record.deleted, "restore")
    check(a.listVisits(VisitFilter(enterpriseId = eid)).single().id == vid, "visit listed")

    step = "timing"
    val n = 200
    val t0 = System.nanoTime()
    repeat(n) { a.createVisit(newVisit(eid, "2025-05-02").copy(notes = "timing $it")) }
    val perCall = (System.nanoTime() - t0) / n / 1e6
    println("kotlin: create_visit %.3f ms per call (average of %d)".format(perCall, n))

    val url = System.getenv("OHASSIST_URL")
    if (url.isNullOrEmpty()) {
        println("kotlin: OHASSIST_URL not set: sync steps SKIPPED")
        return
    }
    val user = System.getenv("OHASSIST_USER")!!
    val password = System.getenv("OHASSIST_PASSWORD")!!

    step = "sync before login"
    expectThrows<OhassistException.NotAuthorised>("sync without login") { a.sync(Counter()) }

    step = "login"
    val lab = LoginOptions(deviceName = "华为 Mate 60 · 张三", allowHttp = true)
    expectThrows<OhassistException.NotAuthorised>("wrong password") { a.login(url, user, "wrong-password", lab) }
    val plain = expectThrows<OhassistException.InvalidInput>("plain http refused") {
        a.login(url, user, password, LoginOptions(deviceName = "华为 Mate 60 · 张三"))
    }
    check(plain.field == "server_url", "plain http names the server address: $plain")
    val info = a.login(url, user, password, lab)
    check(info.role == "inspector" && info.orgUnit == COUNTY, "login info $info")

    step = "sync a"
    check(a.pendingChanges() > 0uL, "changes pending before sync")
    val events = a.syncFlow().toList()
    val first = (events.last() as? SyncEvent.Done)?.report ?: throw AssertionError("$step: the flow ends with Done: $events")
    check(events.count { it is SyncEvent.Progress } >= 2, "the flow emits progress: $events")
    check(first.changesPushed > 0uL, "pushed ${first.changesPushed}")
    check(a.pendingChanges() == 0uL, "outbox drained: ${a.pendingChanges()} left")

    step = "second device"
    val b = Store.open("$dir/b.db", generateStoreKey())
    check(b.deviceId() != a.deviceId(), "two devices")
    b.login(url, user, password, LoginOptions(deviceName = "荣耀 X50 · 李四", allowHttp = true))
    syncOnce(b, "b pulls")
    val vb = b.getVisit(vid)
    check(vb.record.notes == "初次帮扶", "b sees the visit")

    step = "concurrent edits"
    val va = a.getVisit(vid)
    a.updateVisit(vid, va.record.copy(notes = "A 的备注"), va.version)
    b.updateVisit(vid, vb.record.copy(notes = "B 的备注"), vb.version)
    syncOnce(a, "a pushes")
    val bReport = syncOnce(b, "b pushes and pulls")
    check(bReport.conflictedRecords >= 1uL, "b reports a conflicted record")
    val conflicts = b.listConflicts(vid)
    val notes = conflicts.singleOrNull { it.path == "notes" } ?: throw AssertionError("$step: no notes conflict in $conflicts")
    check(notes.values.size == 2 && notes.values.all { it.author?.user == info.userId }, "conflict values $notes")
    check(notes.labelZh == "备注" && notes.labelEn == "Notes", "the conflict names its field: $notes")
    check(b.conflictedRecords().any { it.id == vid && it.kind == RecordKind.VISIT }, "conflicted records")
    b.resolveConflict(vid, "notes", "\"A 和 B 的备注\"")
    check(b.listConflicts(vid).isEmpty() && b.getVisit(vid).record.notes == "A 和 B 的备注", "resolved")
    expectThrows<OhassistException.Conflict>("resolving again") { b.resolveConflict(vid, "notes", "\"x\"") }

    step = "held record"
    // An enterprise of another county: the server refuses it alone; the phone keeps it held.
    val far = newEnterprise("91350122MA0000001K", "邻县企业", County(code = "350122", name = "闽清县"))
        .copy(industry = Industry.MINING)
    a.createEnterprise(far)
    val heldReport = syncOnce(a, "a pushes a record of another county")
    check(heldReport.newlyHeld == 1uL && heldReport.heldRecords == 1uL, "held in the report: $heldReport")
    val held = a.heldRecords().single()
    check(held.docId == "91350122MA0000001K" && held.code == "out_of_scope", "held: $held")
    check(held.reasonZh.isNotEmpty() && held.reasonEn.isNotEmpty() && held.adviceZh.isNotEmpty(), "reasons")
    check(held.pendingChanges > 0uL && a.pendingChanges() > 0uL, "kept for later")
    // A discard needs the confirmation of the record's current version: never by accident.
    expectThrows<OhassistException.NotDiscarded>("discard unconfirmed") { a.discardHeld(held.docId, "") }
    check(a.discardConfirmation(held.docId).startsWith("discard:"), "a confirmation to show")
    check(a.discardedRecords().isEmpty() && a.heldRecords().size == 1, "nothing discarded")

    step = "cancel a sync by cancelling its coroutine"
    val cancelled = (1..20).map { a.createVisit(newVisit(eid, "2025-06-01").copy(notes = "取消测试 $it")) }
    val pending = a.pendingChanges()
    val started = CountDownLatch(1)
    val release = CountDownLatch(1)
    val blocking = object : SyncProgressCallback {
        override fun onProgress(progress: SyncProgress) {
            started.countDown()
            release.await()                 // holds the sync at its first step
        }
    }
    coroutineScope {
        val job = launch(Dispatchers.IO) { a.sync(blocking) }
        check(started.await(30, TimeUnit.SECONDS), "the sync started")
        job.cancel()
        release.countDown()
        job.join()
        check(job.isCancelled, "the coroutine was cancelled")
    }
    check(a.pendingChanges() == pending, "the cancelled sync stopped before pushing: ${a.pendingChanges()} of $pending")
    syncOnce(b, "b after the cancelled sync")
    check(cancelled.none { id -> b.listVisits(VisitFilter(enterpriseId = eid)).any { it.id == id } }, "nothing arrived")
    syncOnce(a, "the next sync completes")
    check(a.pendingChanges() == a.heldRecords().sumOf { it.pendingChanges }, "only the held record is left")
    syncOnce(b, "b after the next sync")
    val onB = b.listVisits(VisitFilter(enterpriseId = eid)).map { it.id }.toSet()
    check(cancelled.all { it in onB }, "no visit of the cancelled sync was lost")

    step = "logout"
    a.logout()
    expectThrows<OhassistException.NotAuthorised>("sync after logout") { a.sync(Counter()) }
    val device = a.deviceId()
    a.close()
    b.close()

    step = "reopen with the key, then a wrong key"
    Store.open("$dir/a.db", key).use { again ->
        check(again.deviceId() == device, "the same device after reopening")
        check(again.getEnterprise(CODE).record.name == "闽侯示范企业", "the record reads back with the key")
    }
    val file = java.io.File("$dir/a.db")
    val before = file.readBytes()
    val wrong = ByteArray(32) { (key[it].toInt() xor 0xff).toByte() }
    expectThrows<OhassistException.WrongKey>("a wrong key") { Store.open("$dir/a.db", wrong) }
    check(file.readBytes().contentEquals(before), "a wrong key changed nothing")
    check(!String(before, Charsets.ISO_8859_1).contains(CODE), "no plaintext credit code in the store file")
}
