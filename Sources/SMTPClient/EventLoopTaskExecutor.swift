import NIOCore

/// A task executor that runs jobs on one NIO event loop.
///
/// A task that prefers it (`withTaskExecutorPreference`, or
/// `TaskGroup.addTask(executorPreference:)`) runs its nonisolated code on the event
/// loop's thread. `SMTPClient` keeps such a caller on connections of that loop (see
/// `SMTPClient.taskExecutors`), so entering the connection actor and coming back are
/// jobs queued on the thread already running, instead of a wake-up of another
/// thread each way. The swift-nio in use has no `EventLoop.taskExecutor` of its own.
public final class EventLoopTaskExecutor: TaskExecutor {
    /// The loop the jobs run on.
    public let eventLoop: any EventLoop

    /// Makes an executor for `eventLoop`.
    public init(eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        eventLoop.execute { [self] in
            job.runSynchronously(on: asUnownedTaskExecutor())
        }
    }
}
