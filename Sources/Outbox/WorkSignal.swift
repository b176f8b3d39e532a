import Synchronization

/// Wakes a waiting delivery loop when new work may be due.
///
/// A notification that arrives while nobody waits is remembered once, so the next
/// `wait` returns at once instead of missing it.
final class WorkSignal: Sendable {
    private struct State: ~Copyable {
        var pending = false
        var waiters: [Int: CheckedContinuation<Void, Never>] = [:]
        var nextID = 0
    }

    private let state = Mutex(State())

    func notify() {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            if state.waiters.isEmpty {
                state.pending = true
                return []
            }
            let all = Array(state.waiters.values)
            state.waiters.removeAll()
            return all
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Returns on a notification, at `deadline`, or when the task is cancelled.
    func wait(until deadline: ContinuousClock.Instant) async {
        let consumed = state.withLock { state -> Bool in
            if state.pending {
                state.pending = false
                return true
            }
            return false
        }
        if consumed { return }
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                try? await Task.sleep(until: deadline, clock: .continuous)
            }
            group.addTask {
                await self.waitForNotification()
            }
            await group.next()
            group.cancelAll()
        }
    }

    private func waitForNotification() async {
        let id = state.withLock { state -> Int in
            state.nextID += 1
            return state.nextID
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = state.withLock { state -> Bool in
                    if Task.isCancelled { return true }
                    if state.pending {
                        state.pending = false
                        return true
                    }
                    state.waiters[id] = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            let waiter = state.withLock { state in state.waiters.removeValue(forKey: id) }
            waiter?.resume()
        }
    }
}
