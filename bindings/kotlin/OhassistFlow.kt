// Kotlin helpers shipped with the generated bindings: copy beside ohassist_ffi.kt.
// The generated API is already `suspend`; this adds a sync as a Flow of its progress.

package org.ohassist.ffi

import kotlinx.coroutines.channels.BufferOverflow
import kotlinx.coroutines.flow.Flow
import kotlinx.coroutines.flow.buffer
import kotlinx.coroutines.flow.channelFlow

/** What a sync tells its collector: its progress after every request, then its report. */
sealed interface SyncEvent {
    data class Progress(val progress: SyncProgress) : SyncEvent
    data class Done(val report: SyncReport) : SyncEvent
}

/**
 * A sync as a cold [Flow]: collecting starts it, emits [SyncEvent.Progress] as it goes and
 * [SyncEvent.Done] last; an error is thrown from `collect`; cancelling the collector cancels
 * the sync (what was stored stays, the next sync resumes). Progress a slow collector has not
 * taken yet is replaced by the newer one; `Done` is never dropped.
 */
fun Store.syncFlow(): Flow<SyncEvent> = channelFlow {
    val report = sync(object : SyncProgressCallback {
        override fun onProgress(progress: SyncProgress) {
            trySend(SyncEvent.Progress(progress))
        }
    })
    send(SyncEvent.Done(report))
}.buffer(capacity = 16, onBufferOverflow = BufferOverflow.DROP_OLDEST)
