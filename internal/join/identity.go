package join

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// A node's name is bound to the key it first joined with (the node's identity key, kept in
// its data directory): a Secret in kube-system records the key's hash, and a later join under
// that name is approved only with the same key. Deleting the Node does not free the name;
// deleting the Secret as well does. This is what k3s's node password is, with a key proving
// possession (the CSR's signature) instead of a shared secret.
const (
	// NodeIdentitySecretType is the type of the Secrets binding node names.
	NodeIdentitySecretType corev1.SecretType = "k1s.io/node-identity"
	// NodeNameAnnotation and NodeKeyAnnotation record the bound name and its key's hash.
	NodeNameAnnotation = "k1s.io/node-name"
	NodeKeyAnnotation  = "k1s.io/node-key-sha256"
	// JoinedByAnnotation records the bootstrap token user that first joined the name.
	JoinedByAnnotation = "k1s.io/joined-by"
)

// NodeIdentitySecretName is the name of the Secret that binds node name to its key.
func NodeIdentitySecretName(name string) string { return name + nodeIdentitySuffix }

const nodeIdentitySuffix = ".node-identity.k1s"

// MaxNodeNameLength is the longest node name whose binding's name is a valid object name.
const MaxNodeNameLength = 253 - len(nodeIdentitySuffix)

// KeyHash is the hex SHA-256 of a DER SubjectPublicKeyInfo.
func KeyHash(spki []byte) string {
	sum := sha256.Sum256(spki)
	return hex.EncodeToString(sum[:])
}

// NodeIdentitySecret binds name to the key with hash keyHash, first joined by user at now.
func NodeIdentitySecret(name, keyHash, user string, now time.Time) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name:      NodeIdentitySecretName(name),
			Namespace: metav1.NamespaceSystem,
			Labels:    managedBy(),
			Annotations: map[string]string{
				NodeNameAnnotation: name,
				NodeKeyAnnotation:  keyHash,
				JoinedByAnnotation: user + " at " + now.UTC().Format(time.RFC3339),
			},
		},
		Type: NodeIdentitySecretType,
	}
}

// ReasonNodeNameTaken is the Denied reason of a join CSR for a name another node owns.
const ReasonNodeNameTaken = "NodeNameTaken"

// NodeNameTakenMessage is what a node joining under a taken name is told.
func NodeNameTakenMessage(name string) string {
	return fmt.Sprintf("node name %s is already taken by another node (another data directory): choose --node-name, or free the name with 'k1s kubectl delete node %s' and 'k1s kubectl -n kube-system delete secret %s'", name, name, NodeIdentitySecretName(name))
}
