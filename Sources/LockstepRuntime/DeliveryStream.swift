// Deliveries as an AsyncSequence with back-pressure: the seed of the embedding API.
//
//     let (member, deliveries) = try await MemberRuntime.startStreaming(
//         settings: settings, eventLoop: loop, logger: logger)
//     for await delivery in deliveries { apply(delivery.payload) }
//
// When the application falls behind by `highWatermark` deliveries, the member stops reading
// from its links; the senders' windows then fill and they stop too. Nothing is dropped: the
// deliveries already made wait in the sequence's buffer (at most a window's worth per sender
// beyond the watermark), and reading resumes once the application is down to `lowWatermark`.

import LockstepCore
import Logging
import NIOCore

public typealias DeliverySequence = NIOAsyncSequenceProducer<
    Delivery, NIOAsyncSequenceProducerBackPressureStrategies.HighLowWatermark, DeliveryStreamDelegate
>

/// Resumes reading when the application asks for more.
public final class DeliveryStreamDelegate: NIOAsyncSequenceProducerDelegate, @unchecked Sendable {
    // Set once, right after the runtime starts.
    fileprivate var runtime: MemberRuntime?

    public func produceMore() {
        runtime?.setDeliveriesWanted(true)
    }

    public func didTerminate() {
        // The application stopped listening: keep the member reading, so the group is not
        // held back by a consumer that is gone.
        runtime?.setDeliveriesWanted(true)
    }
}

extension MemberRuntime {
    /// Starts a member whose deliveries are consumed as an AsyncSequence, with back-pressure.
    public static func startStreaming(
        settings: RuntimeSettings, eventLoop: EventLoop, logger: Logger, lowWatermark: Int = 1_024,
        highWatermark: Int = 8_192
    ) async throws -> (MemberRuntime, DeliverySequence) {
        precondition(
            0 < lowWatermark && lowWatermark < highWatermark, "watermarks \(lowWatermark) and \(highWatermark)")
        let delegate = DeliveryStreamDelegate()
        let producer = DeliverySequence.makeSequence(
            backPressureStrategy: .init(lowWatermark: lowWatermark, highWatermark: highWatermark),
            finishOnDeinit: true, delegate: delegate)
        let source = producer.source
        let runtimeBox = RuntimeBox()
        let runtime = try await start(settings: settings, eventLoop: eventLoop, logger: logger) { delivery in
            switch source.yield(delivery) {
            case .produceMore, .dropped:
                // .dropped only after the consumer is gone; the member keeps running regardless.
                break
            case .stopProducing:
                runtimeBox.runtime?.setDeliveriesWanted(false)
            }
        }
        runtimeBox.runtime = runtime
        delegate.runtime = runtime
        return (runtime, producer.sequence)
    }
}

/// Lets the delivery callback reach the runtime it is installed in.
private final class RuntimeBox: @unchecked Sendable {
    var runtime: MemberRuntime?
}
