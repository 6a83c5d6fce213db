// Command nemutator-testenv is the test control plane of nemutator: one binary
// that runs etcd or kube-apiserver (linked from their Go modules) and a few
// helpers that scripts/apiserver.sh uses to set them up.
//
//	nemutator-testenv etcd [etcd flags]
//	nemutator-testenv kube-apiserver [kube-apiserver flags]
//	nemutator-testenv pki DIR
//	nemutator-testenv freeports N
//	nemutator-testenv kubeconfig DIR SERVER_URL
//	nemutator-testenv wait-ready KUBECONFIG TIMEOUT PID...
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // as kube-apiserver's main: time zones for CronJob

	"go.etcd.io/etcd/server/v3/etcdmain"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"          // as kube-apiserver's main
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // as kube-apiserver's main
	_ "k8s.io/component-base/metrics/prometheus/version"  // as kube-apiserver's main
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

const usage = `usage: nemutator-testenv COMMAND [ARGS]
  etcd [FLAGS]                       run etcd (etcdmain.Main)
  kube-apiserver [FLAGS]             run kube-apiserver (app.NewAPIServerCommand)
  pki DIR                            write CA, serving, admin and service-account keys to DIR
  freeports N                        print N free TCP ports on 127.0.0.1, one a line
  kubeconfig DIR SERVER_URL          write DIR/kubeconfig for the admin certificate in DIR
  wait-ready KUBECONFIG TIMEOUT PID...  wait for /readyz and namespace default; fail if a PID exits
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	args := os.Args[2:]
	var err error
	switch os.Args[1] {
	case "etcd":
		// etcdmain.Main reads flags from args[1:], as etcd's own main passes os.Args.
		etcdmain.Main(append([]string{"etcd"}, args...))
		return
	case "kube-apiserver":
		// As cmd/kube-apiserver/apiserver.go, with the flags after our subcommand.
		command := app.NewAPIServerCommand()
		command.SetArgs(args)
		os.Exit(cli.Run(command))
	case "pki":
		err = need(args, 1, func() error { return writePKI(args[0]) })
	case "freeports":
		err = need(args, 1, func() error { return freePorts(args[0]) })
	case "kubeconfig":
		err = need(args, 2, func() error { return writeKubeconfig(args[0], args[1]) })
	case "wait-ready":
		if len(args) < 2 {
			err = fmt.Errorf("wait-ready needs KUBECONFIG TIMEOUT [PID...]")
		} else {
			err = waitReady(args[0], args[1], args[2:])
		}
	case "-h", "--help", "help":
		fmt.Print(usage)
		return
	default:
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "nemutator-testenv %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func need(args []string, n int, f func() error) error {
	if len(args) != n {
		return fmt.Errorf("want %d arguments, got %d", n, len(args))
	}
	return f()
}

// PKI file names inside DIR.
const (
	caCert     = "ca.crt"
	caKey      = "ca.key"
	serveCert  = "apiserver.crt"
	serveKey   = "apiserver.key"
	adminCert  = "admin.crt"
	adminKey   = "admin.key"
	saKey      = "sa.key"
	saPub      = "sa.pub"
	validity   = 10 * 365 * 24 * time.Hour
	clockSkew  = time.Hour
	adminUser  = "nemutator-admin"
	adminGroup = "system:masters"
)

func newKey() (*ecdsa.PrivateKey, error) {
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

func serial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

func writePEM(path, typ string, der []byte, mode os.FileMode) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode)
}

func writeKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	return writePEM(path, "PRIVATE KEY", der, 0o600)
}

// writePKI writes a fresh CA, a serving certificate for 127.0.0.1/localhost,
// an admin client certificate (O=system:masters) and a service-account key
// pair, all ECDSA P-256.
func writePKI(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	now := time.Now()
	caPriv, err := newKey()
	if err != nil {
		return err
	}
	sn, err := serial()
	if err != nil {
		return err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: "nemutator-testenv-ca"},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caPriv.PublicKey, caPriv)
	if err != nil {
		return err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return err
	}
	if err := writePEM(filepath.Join(dir, caCert), "CERTIFICATE", caDER, 0o644); err != nil {
		return err
	}
	if err := writeKey(filepath.Join(dir, caKey), caPriv); err != nil {
		return err
	}

	leaf := func(certPath, keyPath string, tmpl *x509.Certificate) error {
		priv, err := newKey()
		if err != nil {
			return err
		}
		if tmpl.SerialNumber, err = serial(); err != nil {
			return err
		}
		tmpl.NotBefore, tmpl.NotAfter = now.Add(-clockSkew), now.Add(validity)
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &priv.PublicKey, caPriv)
		if err != nil {
			return err
		}
		if err := writePEM(certPath, "CERTIFICATE", der, 0o644); err != nil {
			return err
		}
		return writeKey(keyPath, priv)
	}
	if err := leaf(filepath.Join(dir, serveCert), filepath.Join(dir, serveKey), &x509.Certificate{
		Subject:     pkix.Name{CommonName: "kube-apiserver"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
			"kubernetes.default.svc.cluster.local"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback, net.IPv4(10, 0, 0, 1)},
	}); err != nil {
		return err
	}
	if err := leaf(filepath.Join(dir, adminCert), filepath.Join(dir, adminKey), &x509.Certificate{
		Subject:     pkix.Name{CommonName: adminUser, Organization: []string{adminGroup}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		return err
	}

	saPriv, err := newKey()
	if err != nil {
		return err
	}
	if err := writeKey(filepath.Join(dir, saKey), saPriv); err != nil {
		return err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&saPriv.PublicKey)
	if err != nil {
		return err
	}
	return writePEM(filepath.Join(dir, saPub), "PUBLIC KEY", pubDER, 0o644)
}

// freePorts prints n distinct free ports; all listeners stay open until all
// are chosen, so the n ports differ.
func freePorts(arg string) error {
	n, err := strconv.Atoi(arg)
	if err != nil || n < 1 {
		return fmt.Errorf("bad count %q", arg)
	}
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		ls = append(ls, l)
		fmt.Println(l.Addr().(*net.TCPAddr).Port)
	}
	return nil
}

// writeKubeconfig writes DIR/kubeconfig: the admin client certificate, the CA
// embedded, server SERVER_URL.
func writeKubeconfig(dir, server string) error {
	read := func(name string) ([]byte, error) { return os.ReadFile(filepath.Join(dir, "pki", name)) }
	ca, err := read(caCert)
	if err != nil {
		return err
	}
	cert, err := read(adminCert)
	if err != nil {
		return err
	}
	key, err := read(adminKey)
	if err != nil {
		return err
	}
	const name = "nemutator-testenv"
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[name] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: ca}
	cfg.AuthInfos[adminUser] = &clientcmdapi.AuthInfo{ClientCertificateData: cert, ClientKeyData: key}
	cfg.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: adminUser, Namespace: "default"}
	cfg.CurrentContext = name
	return clientcmd.WriteToFile(*cfg, filepath.Join(dir, "kubeconfig"))
}

// alive tells whether pid runs and is no zombie.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z' && s[i+2] != 'X'
	}
	return true
}

// waitReady polls until /readyz answers ok and namespace default exists.
func waitReady(kubeconfig, timeout string, pids []string) error {
	d, err := time.ParseDuration(timeout)
	if err != nil {
		return err
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return err
	}
	cfg.Timeout = 5 * time.Second
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(d)
	var last error
	for {
		for _, p := range pids {
			pid, err := strconv.Atoi(p)
			if err != nil {
				return fmt.Errorf("bad pid %q", p)
			}
			if !alive(pid) {
				return fmt.Errorf("process %d exited", pid)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		body, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err == nil && strings.TrimSpace(string(body)) == "ok" {
			_, err = cs.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{})
			if err == nil {
				cancel()
				return nil
			}
		} else if err == nil {
			err = fmt.Errorf("/readyz: %s", strings.TrimSpace(string(body)))
		}
		cancel()
		last = err
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %s: %v", d, last)
		}
		time.Sleep(250 * time.Millisecond)
	}
}
