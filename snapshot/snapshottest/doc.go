// Package snapshottest is the conformance suite for [snapshot.Store]
// implementations. Every store Chronicle ships runs it, and so can yours:
//
//	func TestConformance(t *testing.T) {
//		snapshottest.Run(t, func(t *testing.T) snapshot.Store {
//			return mystore.New(...)
//		})
//	}
//
// The suite runs its tests in parallel, each on a store returned by its own
// call of the constructor, which must therefore return an empty store.
package snapshottest
