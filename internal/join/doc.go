// Package join is the contract between a node and the cluster it joins, in one place: the
// join token and the CA hash it pins, discovery (the signed cluster-info a node authenticates
// the server with before it sends a secret), the node settings every node reads once joined,
// and the server side that publishes all of these. Both ends import it, so they cannot drift.
package join
