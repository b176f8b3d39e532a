import Foundation
import Testing

@testable import PigeonApp

@Suite("The disk check of /readyz (PIGEON_MIN_FREE_DISK)")
struct DiskSpaceTests {
    @Test("below the threshold the check fails, naming the folder, the free space and the setting")
    func belowThreshold() throws {
        let folder = NSTemporaryDirectory() + "pigeon-disk-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let check = DiskSpaceCheck(databasePath: folder + "/outbox.sqlite", minimumFreeBytes: 1 << 50)
        #expect(check.folder == folder)
        let problem = try #require(check.problem())
        #expect(problem.contains(" free in \(folder), less than PIGEON_MIN_FREE_DISK (1 PB)"), "\(problem)")
    }

    @Test("at or above the threshold, or with 0, the check passes")
    func aboveThreshold() {
        let folder = NSTemporaryDirectory()
        #expect(DiskSpaceCheck(databasePath: folder + "/outbox.sqlite", minimumFreeBytes: 1).problem() == nil)
        let off = DiskSpaceCheck(databasePath: folder + "/outbox.sqlite", minimumFreeBytes: 0)
        #expect(!off.isEnabled)
        #expect(off.problem() == nil)
    }

    @Test("a folder that cannot be measured fails the check with the system's reason")
    func missingFolder() throws {
        let check = DiskSpaceCheck(databasePath: "/nonexistent-\(UUID().uuidString)/outbox.sqlite", minimumFreeBytes: 1)
        let problem = try #require(check.problem())
        #expect(problem.hasPrefix("cannot read the free space of /nonexistent-"))
        #expect(problem.hasSuffix("No such file or directory"))
    }

    @Test("a relative database path is measured in the working directory's folder")
    func relativePath() {
        let check = DiskSpaceCheck(databasePath: "./pigeon.sqlite", minimumFreeBytes: 1)
        #expect(check.folder == FileManager.default.currentDirectoryPath)
    }

    @Test(
        "sizes are written as df -h does, in the setting's units",
        arguments: [
            (0, "0 bytes"), (1023, "1023 bytes"), (1024, "1 KB"), (43_515_904, "41.5 MB"), (67_108_864, "64 MB"),
            (1 << 50, "1 PB"),
        ] as [(Int64, String)]
    )
    func format(bytes: Int64, text: String) {
        #expect(DiskSpaceCheck.format(bytes) == text)
    }
}
