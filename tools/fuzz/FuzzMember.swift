// libFuzzer entry point for the member shell: the input is a script of well-formed but hostile
// frames and events (Sources/LockstepSimulator/HostilePeers.swift reads it). Built by
// tools/fuzz-member with the LockstepCore sources. A trap is a crash the fuzzer reports.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzMember(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    _ = HostilePeers.play(Array(UnsafeBufferPointer(start: data, count: size)))
    return 0
}
