// The wire format: how a member's messages are framed on a byte stream (TCP). Specified in
// docs/WIRE.md; this file is the one implementation. Pure code, no IO: transports hand it
// bytes, and the fuzzer drives the decoder directly.
//
// Every frame: a 12-byte header, then `length` bytes of body. All integers little-endian.
//   magic u32 = 0x4C4B5354 ("TSKL" in memory order; "LKST" as a number)
//   version u8 (Wire.version)
//   type u8: 1 hello, 2 data, 3 row, 4 relay block, 5 control
//   reserved u16 = 0
//   length u32: body bytes
//
// A data frame carries one DataBatch (many messages); a row frame one Row.

import LockstepCore

public enum Wire {
    public static let magic: UInt32 = 0x4C4B_5354
    /// 2: rows carry suspicions (failure detection); 3: membership columns; 4: the hello names
    /// its lane (control or data connection) and relay blocks carry their view; 5: rows carry
    /// `persisted` (durable mode).
    public static let version: UInt8 = 5
    public static let headerBytes = 12

    public enum FrameType: UInt8, Sendable {
        case hello = 1
        case data = 2
        case row = 3
        case block = 4
        case control = 5
    }

    /// Control frames (joins) carry at most this many bytes of body.
    public static let controlBytesMax = 1 << 20

    /// Bytes of fixed fields in a data body before its entries: view u64, sender rank u32,
    /// entry count u32, first index u64.
    static let dataFixedBytes = 24
    /// Per entry: kind u8, then u32 payload length (message) or u64 count (nulls).
    static let messageEntryFixedBytes = 5
    static let nullsEntryBytes = 9
    /// Row body: view u64, seq u64, delivered u64, sender count u32, suspicion word count u32,
    /// then u64 per sender, then u64 per suspicion word.
    static let rowFixedBytes = 32
    /// Hello body: member id u64, view id u64, member rank u32, sender count u32, lane u32.
    static let helloBytes = 28
    /// Block body before its bytes: view u64, origin member rank u32, message index u64, total
    /// bytes u32, offset u32.
    static let blockFixedBytes = 28
    /// Where a frame header keeps its type and its body length (`peekHeader` reads them).
    static let headerTypeOffset = 5
    static let headerLengthOffset = 8

    /// What a transport needs of a frame's header to route a frame to its lane or to split a
    /// stream into frames without decoding it: the type (nil: not a type this version knows) and
    /// the body length. Unchecked: the decoder checks magic, version and limits.
    public struct HeaderPeek: Sendable, Equatable {
        public var type: FrameType?
        public var bodyBytes: Int
        /// The whole frame's bytes, header included.
        public var frameBytes: Int { headerBytes + bodyBytes }
    }

    /// The header at the start of `bytes` (nil: fewer than `headerBytes` bytes).
    public static func peekHeader(_ bytes: UnsafeRawBufferPointer) -> HeaderPeek? {
        guard bytes.count >= headerBytes else { return nil }
        let length = UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: headerLengthOffset, as: UInt32.self))
        return HeaderPeek(type: FrameType(rawValue: bytes[headerTypeOffset]), bodyBytes: Int(length))
    }
}

/// Which connection of a member pair a hello opens. TCP keeps two per pair so that control
/// traffic (rows, heartbeats, membership) never queues behind megabytes of data (docs/WIRE.md,
/// "Lanes"); RDMA keeps one queue pair and gives rows their own slots.
public enum Lane: UInt32, Sendable, Equatable, CustomStringConvertible {
    /// The only connection of the pair: it carries every frame.
    case all = 0
    /// Rows, hellos and control frames.
    case control = 1
    /// Data batches and relay blocks.
    case data = 2

    /// The lane a frame of `type` travels on when the pair has two.
    public static func of(_ type: Wire.FrameType) -> Lane {
        switch type {
        case .data, .block: return .data
        case .hello, .row, .control: return .control
        }
    }

    public var description: String {
        switch self {
        case .all: return "all"
        case .control: return "control"
        case .data: return "data"
        }
    }
}

/// The first frame on every connection: who is calling, and for which lane.
public struct Hello: Sendable, Equatable {
    public var member: MemberID
    public var viewID: ViewID
    public var memberRank: Int
    public var senderCount: Int
    public var lane: Lane
    public init(member: MemberID, viewID: ViewID, memberRank: Int, senderCount: Int, lane: Lane = .all) {
        self.member = member
        self.viewID = viewID
        self.memberRank = memberRank
        self.senderCount = senderCount
        self.lane = lane
    }
}

/// A decoded frame.
public enum Frame: Sendable, Equatable {
    case hello(Hello)
    case message(Message)
    /// A data batch some of whose payloads travel separately, as blocks through the relay: those
    /// entries hold an empty payload here, and `relayed` says which and how long.
    case relayedData(DataBatch, relayed: [RelayedEntry])
    /// One block of a relayed payload.
    case block(Block)
    /// Membership control between a joining process and the group (join request, redirect,
    /// welcome with the view and a snapshot): an opaque body the runtime interprets.
    case control([UInt8])
}

/// A data-batch entry whose payload travels through the relay.
public struct RelayedEntry: Sendable, Equatable {
    /// Position in the batch's entries.
    public var position: Int
    /// The sender's index of the message.
    public var index: UInt64
    public var bytes: Int
    public init(position: Int, index: UInt64, bytes: Int) {
        self.position = position
        self.index = index
        self.bytes = bytes
    }
}

/// A piece of a relayed payload: bytes `offset..<offset + bytes.count` of message `index` of the
/// sender at member rank `originMemberRank` of view `viewID`, whose payload has `totalBytes`.
public struct Block: Sendable, Equatable {
    public var viewID: ViewID
    public var originMemberRank: Int
    public var index: UInt64
    public var totalBytes: Int
    public var offset: Int
    public var bytes: ArraySlice<UInt8>
    public init(
        viewID: ViewID, originMemberRank: Int, index: UInt64, totalBytes: Int, offset: Int, bytes: ArraySlice<UInt8>
    ) {
        self.viewID = viewID
        self.originMemberRank = originMemberRank
        self.index = index
        self.totalBytes = totalBytes
        self.offset = offset
        self.bytes = bytes
    }
}

/// Limits the decoder enforces; a frame beyond them is an error, never an allocation.
public struct WireLimits: Sendable, Equatable {
    /// Largest frame body accepted.
    public var frameBytesMax: Int
    /// Largest single message payload.
    public var messageBytesMax: Int
    /// Most entries in one data frame.
    public var entriesMax: Int
    /// Most senders in a row.
    public var sendersMax: Int

    public init(frameBytesMax: Int, messageBytesMax: Int, entriesMax: Int, sendersMax: Int) {
        self.frameBytesMax = frameBytesMax
        self.messageBytesMax = messageBytesMax
        self.entriesMax = entriesMax
        self.sendersMax = sendersMax
    }

    /// Limits that accept everything a core with `configuration` can send.
    public init(configuration: Configuration) {
        let entries = configuration.batchMessagesMax
        // A batch stops growing once it reaches batchBytesMax, so its last message may add up to
        // messageBytesMax beyond that.
        let payloadBytes = configuration.batchBytesMax + configuration.messageBytesMax
        self.init(
            frameBytesMax: Wire.dataFixedBytes + entries * Wire.nullsEntryBytes + payloadBytes,
            messageBytesMax: configuration.messageBytesMax, entriesMax: entries, sendersMax: configuration.membersMax)
    }
}

/// Why bytes could not be decoded. The connection that carried them must be closed.
public struct WireError: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable {
        case badMagic, badVersion, unknownFrameType, frameTooLarge, truncatedBody, trailingBytes, tooManyEntries
        case messageTooLarge, unknownEntryKind, badReservedField, tooManySenders, valueOutOfRange, badBlock
    }
    public var code: Code
    public var detail: String
    public init(_ code: Code, _ detail: String) {
        self.code = code
        self.detail = detail
    }
    public var description: String { "malformed frame (\(code.rawValue)): \(detail)" }
}
