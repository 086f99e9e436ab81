#!/usr/bin/env bash
# Certificates and keys of the local cluster, made with openssl (ECDSA P-256: fast, and
# accepted by every component): a cluster CA, the API server's serving cert, one client
# cert per component (the identity RBAC and the Node authorizer expect), the kubelet's
# serving cert, a front-proxy CA + client (aggregated APIs such as metrics-server) and the
# service-account signing key pair. Kubeconfigs for every client.
# Idempotent: an existing PKI directory is kept (delete $CLUSTER_DIR/pki to renew).
set -euo pipefail
# shellcheck source=scripts/cluster/lib.sh
source "$(dirname "$0")/lib.sh"

mkdir -p "$PKI"
cd "$PKI"
[ -f .complete ] && { log "certificates: present in $PKI"; exit 0; }
log "certificates: creating in $PKI"

key() { openssl ecparam -name prime256v1 -genkey -noout -out "$1.key" 2>/dev/null; chmod 600 "$1.key"; }

ca() { # ca NAME CN
  key "$1"
  openssl req -x509 -new -key "$1.key" -subj "/CN=$2" -days 3650 -sha256 -out "$1.crt" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
}

# cert NAME CA SUBJECT EXTKEYUSAGE [SANS]
cert() {
  local name=$1 ca=$2 subj=$3 eku=$4 sans=${5:-}
  key "$name"
  openssl req -new -key "$name.key" -subj "$subj" -out "$name.csr"
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$eku"
    [ -n "$sans" ] && echo "subjectAltName=$sans"
  } >"$name.ext"
  openssl x509 -req -in "$name.csr" -CA "$ca.crt" -CAkey "$ca.key" -CAcreateserial \
    -days 3650 -sha256 -extfile "$name.ext" -out "$name.crt" 2>/dev/null
  rm -f "$name.csr" "$name.ext"
}

ca ca fastapi-kit-ca
ca front-proxy-ca fastapi-kit-front-proxy-ca
cert apiserver ca "/CN=kube-apiserver" serverAuth \
  "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost,IP:$NODE_IP,IP:$API_SERVICE_IP,IP:127.0.0.1"
cert apiserver-kubelet-client ca "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth
cert admin ca "/O=system:masters/CN=kubernetes-admin" clientAuth
cert controller-manager ca "/CN=system:kube-controller-manager" clientAuth
cert scheduler ca "/CN=system:kube-scheduler" clientAuth
cert kube-proxy ca "/O=system:node-proxier/CN=system:kube-proxy" clientAuth
cert kubelet ca "/O=system:nodes/CN=system:node:$NODE_NAME" clientAuth
cert kubelet-serving ca "/O=system:nodes/CN=system:node:$NODE_NAME" serverAuth "DNS:$NODE_NAME,IP:$NODE_IP"
cert front-proxy-client front-proxy-ca "/CN=front-proxy-client" clientAuth
key sa
openssl ec -in sa.key -pubout -out sa.pub 2>/dev/null

kubeconfig() { # kubeconfig FILE CERT
  cat >"$1" <<KC
apiVersion: v1
kind: Config
clusters:
  - name: fastapi-kit
    cluster:
      server: https://$NODE_IP:$API_PORT
      certificate-authority: $PKI/ca.crt
users:
  - name: $2
    user:
      client-certificate: $PKI/$2.crt
      client-key: $PKI/$2.key
contexts:
  - name: fastapi-kit
    context:
      cluster: fastapi-kit
      user: $2
current-context: fastapi-kit
KC
  chmod 600 "$1"
}
for c in admin controller-manager scheduler kube-proxy kubelet; do kubeconfig "$c.kubeconfig" "$c"; done
cp admin.kubeconfig "$KUBECONFIG_OUT" 2>/dev/null || true
touch .complete
