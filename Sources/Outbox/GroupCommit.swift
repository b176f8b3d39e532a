import Synchronization

/// Runs concurrent write jobs together in one transaction (group commit).
///
/// The first caller that finds no transaction running becomes the leader: it takes
/// every job waiting at that moment, runs them all in one transaction through
/// `execute`, and hands each waiter its own result. If more jobs arrived meanwhile,
/// leadership passes to the oldest of them, so no caller serves others forever. Each
/// caller returns only after the transaction holding its job has committed (or
/// failed), so durability costs one fsync per batch, not one per job.
final class GroupCommitter<Job: Sendable, Output: Sendable>: Sendable {
    typealias Execute = @Sendable ([Job]) async -> [Result<Output, any Error>]

    private enum Wake: Sendable {
        case done(Result<Output, any Error>)
        case lead
    }

    private struct Waiter {
        var job: Job
        var continuation: CheckedContinuation<Wake, Never>
    }

    private struct State: ~Copyable {
        var leaderActive = false
        var pending: [Waiter] = []
    }

    private let state = Mutex(State())
    private let batches = Atomic<Int>(0)
    private let execute: Execute

    /// How many transactions have run (for tests and metrics).
    var batchCount: Int { batches.load(ordering: .relaxed) }
    private let maxBatch: Int

    init(maxBatch: Int = 512, execute: @escaping Execute) {
        self.maxBatch = maxBatch
        self.execute = execute
    }

    func submit(_ job: Job) async throws -> Output {
        let leadNow = state.withLock { state -> Bool in
            if state.leaderActive { return false }
            state.leaderActive = true
            return true
        }
        if !leadNow {
            let wake = await withCheckedContinuation { (continuation: CheckedContinuation<Wake, Never>) in
                let lead = state.withLock { state -> Bool in
                    if state.leaderActive {
                        state.pending.append(Waiter(job: job, continuation: continuation))
                        return false
                    }
                    state.leaderActive = true
                    return true
                }
                if lead { continuation.resume(returning: .lead) }
            }
            if case .done(let result) = wake { return try result.get() }
        }
        // Leader: this job plus whatever is waiting.
        let others = state.withLock { state -> [Waiter] in
            let count = min(state.pending.count, maxBatch - 1)
            let taken = Array(state.pending.prefix(count))
            state.pending.removeFirst(count)
            return taken
        }
        let results = await execute([job] + others.map(\.job))
        batches.add(1, ordering: .relaxed)
        for (index, waiter) in others.enumerated() {
            waiter.continuation.resume(returning: .done(results[index + 1]))
        }
        let next = state.withLock { state -> Waiter? in
            if state.pending.isEmpty {
                state.leaderActive = false
                return nil
            }
            return state.pending.removeFirst()
        }
        next?.continuation.resume(returning: .lead)
        // A lead handed to `next` re-enters above with its own job as the first of the batch.
        return try results[0].get()
    }
}
