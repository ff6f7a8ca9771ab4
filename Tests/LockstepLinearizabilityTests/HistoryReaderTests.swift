import Testing

@testable import LockstepLinearizability

@Suite("JSON-lines reader")
struct HistoryReaderTests {
    @Test func readsEveryOperationKind() throws {
        let text = """
            {"client":3,"op":"put","key":"k","value":"v","call":123,"return":456,"output":"ok"}
            {"client":1,"op":"get","key":"k","call":500,"return":600,"output":{"value":"v"}}

            {"client":1,"op":"get","key":"q","call":500,"return":600,"output":{"value":null}}
            {"client":2,"op":"delete","key":"k","call":700,"return":800,"output":"ok"}
            {"client":4,"op":"cas","key":"k","expected":null,"new":"w","call":90,"return":95,"output":{"swapped":true}}
            {"client":5,"op":"put","key":"k","value":"p","call":990}
            """
        let history = try readHistory(text: text)
        #expect(history.count == 6)
        #expect(history[0].input == .put(key: "k", value: "v"))
        #expect(history[0].call == 123 && history[0].returned == 456 && history[0].output == .ok)
        #expect(history[1].output == .value("v"))
        #expect(history[2].output == .value(nil))
        #expect(history[3].input == .delete(key: "k"))
        #expect(history[4].input == .compareAndSet(key: "k", expected: nil, new: "w"))
        #expect(history[4].output == .swapped(true))
        #expect(history[5].isPending && history[5].output == nil)
        #expect(checkLinearizable(history).ok)
    }

    @Test func reportsTypedErrorsWithLineNumbers() {
        #expect(throws: HistoryReadError.missingField(line: 1, field: "expected")) {
            try readHistory(text: #"{"client":1,"op":"cas","key":"k","new":"x","call":3}"#)
        }
        #expect(throws: HistoryReadError.missingField(line: 2, field: "value")) {
            try readHistory(text: "\n" + #"{"client":1,"op":"put","key":"k","call":3}"#)
        }
        #expect(throws: HistoryReadError.unknownOperation(line: 1, name: "append")) {
            try readHistory(text: #"{"client":1,"op":"append","key":"k","call":3}"#)
        }
        #expect(throws: HistoryReadError.returnBeforeCall(line: 1)) {
            try readHistory(text: #"{"client":1,"op":"get","key":"k","call":30,"return":3}"#)
        }
        #expect(throws: HistoryReadError.invalidOutput(line: 1, detail: "output does not match op \"get\"")) {
            try readHistory(text: #"{"client":1,"op":"get","key":"k","call":3,"return":4,"output":"ok"}"#)
        }
        #expect(throws: HistoryReadError.self) {
            try readHistory(text: "{not json")
        }
        #expect(throws: HistoryReadError.self) {
            try readHistory(text: #"{"client":1,"op":"get","key":"k","call":-3}"#)
        }
    }
}
