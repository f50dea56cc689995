// Package shredtest is the conformance suite of [shred.KeyStore]: every key
// store (package memory's, package postgres's) runs [Run] in its tests and
// must pass it.
package shredtest
