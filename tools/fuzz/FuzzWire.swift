// libFuzzer entry point for the frame decoder. Built by tools/fuzz-wire together with the
// LockstepCore and LockstepWire sources. Whatever decodes must re-encode to the same bytes.

import LockstepCore

let fuzzLimits = WireLimits(frameBytesMax: 1 << 20, messageBytesMax: 1 << 16, entriesMax: 512, sendersMax: 64)

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzWire(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var rest = Array(UnsafeBufferPointer(start: data, count: size))
    while let result = try? Wire.decode(rest, limits: fuzzLimits) {
        if case .hello = result.frame {} else {
            let again = Wire.encode(result.frame)
            precondition(again == Array(rest.prefix(result.bytes)), "decode then encode changed the bytes")
        }
        rest.removeFirst(result.bytes)
    }
    return 0
}
