"""The cluster tier: a real etcd + kube-apiserver + kube-controller-manager on loopback."""
