import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The `disk` check of `/readyz`: free space in the database's folder against `PIGEON_MIN_FREE_DISK`.
///
/// A full disk makes every enqueue fail (SQLite cannot grow the WAL), so each request
/// would be a `503` anyway; failing readiness first lets a load balancer send traffic
/// to another instance, and an operator's readiness alert fire, before that. The
/// space counted is what unprivileged users may take (`f_bavail`, not `f_bfree`):
/// the root reserve of ext4 is not Pigeon's to use unless it runs as root, and
/// running out of it is how the disk fills for everyone else.
struct DiskSpaceCheck: Sendable {
    /// The folder whose file system is measured (the database file's folder).
    let folder: String
    /// Below this many free bytes the check fails; 0 turns it off.
    let minimumFreeBytes: Int64

    /// The check for the folder of `databasePath` (relative paths resolve against the working directory, as SQLite's do).
    init(databasePath: String, minimumFreeBytes: Int64) {
        folder = URL(fileURLWithPath: databasePath).standardizedFileURL.deletingLastPathComponent().path
        self.minimumFreeBytes = minimumFreeBytes
    }

    /// Whether `/readyz` lists the check at all.
    var isEnabled: Bool { minimumFreeBytes > 0 }

    /// nil when there is enough free space, else why not (the readiness body's text).
    func problem() -> String? {
        guard isEnabled else { return nil }
        let free: Int64
        switch Self.freeBytes(folder: folder) {
        case .success(let bytes): free = bytes
        case .failure(let error): return "cannot read the free space of \(folder): \(error.text)"
        }
        guard free < minimumFreeBytes else { return nil }
        return "\(Self.format(free)) free in \(folder), less than PIGEON_MIN_FREE_DISK (\(Self.format(minimumFreeBytes)))"
    }

    /// The failure of `statvfs(3)`, as its `errno`.
    struct StatError: Error {
        /// The `errno` value.
        var code: Int32
        /// `strerror` of it.
        var text: String { String(cString: strerror(code)) }
    }

    /// Bytes available to unprivileged users on the file system of `folder`: `f_bavail` blocks of `f_frsize` bytes.
    static func freeBytes(folder: String) -> Result<Int64, StatError> {
        var stats = statvfs()
        guard statvfs(folder, &stats) == 0 else { return .failure(StatError(code: errno)) }
        let (bytes, overflow) = UInt64(stats.f_bavail).multipliedReportingOverflow(by: UInt64(stats.f_frsize))
        return .success(overflow || bytes > UInt64(Int64.max) ? Int64.max : Int64(bytes))
    }

    /// A size as `df -h` writes it, in powers of 1024 with the units `PIGEON_MIN_FREE_DISK` takes: `41.5 MB`, `64 MB`.
    static func format(_ bytes: Int64) -> String {
        let units = ["bytes", "KB", "MB", "GB", "TB", "PB", "EB"]
        var value = Double(bytes)
        var unit = 0
        while value >= 1024, unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        if unit == 0 { return "\(bytes) bytes" }
        let rounded = (value * 10).rounded() / 10
        let text = rounded == rounded.rounded() ? String(Int(rounded)) : String(rounded)
        return "\(text) \(units[unit])"
    }
}
