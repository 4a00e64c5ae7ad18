// TrustKit configuration for lencr.org, Swift (call from application(_:didFinishLaunching...)).
// The two ISRG roots, each the other's backup; TrustKit wants bare base64 SPKI hashes and
// at least two of them.
import TrustKit

func configurePinning() {
    let trustKitConfig: [String: Any] = [
        kTSKSwizzleNetworkDelegates: false,
        kTSKPinnedDomains: [
            "lencr.org": [
                kTSKEnforcePinning: true,
                kTSKIncludeSubdomains: false,
                kTSKExpirationDate: "2028-01-01",
                kTSKPublicKeyHashes: [
                    "C5+lpZ7tcVwmwQIMcRtPbsQtWLABXhQzejna0wHFr8M=", // ISRG Root X1
                    "diGVwiVYbubAI3RW4hB9xU8e/CH2GnkuvVFZE8zmgzI=", // ISRG Root X2
                ],
            ],
        ],
    ]
    TrustKit.initSharedInstance(withConfiguration: trustKitConfig)
}
