// OkHttp certificate pinning for lencr.org (Let's Encrypt's site), Kotlin.
//
// Pins the two ISRG roots: lencr.org's chains end at ISRG Root X1 (RSA) or, for ECDSA
// chains, ISRG Root X2, and Let's Encrypt moves among its intermediates (R10-R14, E5-E9)
// at random, so intermediate pins would break. Each root is the other's backup.
// Pins computed with `pinlab pins` on ../shared/data/le-hierarchy.
package org.example.pinning

import okhttp3.CertificatePinner
import okhttp3.OkHttpClient

private const val HOST = "lencr.org"

// ISRG Root X1 (RSA-4096), certs/96bcec06264976f3.pem
private const val ISRG_ROOT_X1 = "C5+lpZ7tcVwmwQIMcRtPbsQtWLABXhQzejna0wHFr8M="

// ISRG Root X2 (P-384), certs/8b05b68cc659e5ed.pem
private const val ISRG_ROOT_X2 = "diGVwiVYbubAI3RW4hB9xU8e/CH2GnkuvVFZE8zmgzI="

val certificatePinner: CertificatePinner = CertificatePinner.Builder()
    .add(HOST, "sha256/$ISRG_ROOT_X1")
    .add(HOST, "sha256/${ISRG_ROOT_X2}")
    .build()

val client: OkHttpClient = OkHttpClient.Builder()
    .certificatePinner(certificatePinner)
    .build()
