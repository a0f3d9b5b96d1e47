// vigie-vcsim: govmomi's vCenter simulator (github.com/vmware/govmomi/simulator) with the lab
// estate's inventory and the lab's fault knobs.
//
// Built by lab/vcsim/service.py with Debian's golang-go and golang-github-vmware-govmomi-dev
// (GOPATH=/usr/share/gocode GO111MODULE=off). It serves the vSphere SOAP API on -listen over TLS
// (a self-signed certificate written to -cert-out as PEM for the clients to trust, or -cert/-key),
// prints "ready URL" on stdout once it listens, and nothing more there.
//
// Inventory: one datacenter, -cluster-names clusters of -host-names hosts each (dealt in order),
// -vm-names VMs dealt evenly over the clusters' root resource pools, -datastore-names datastores
// mounted on every host, and a few of vCenter's default alarm definitions.
//
// State the SOAP API cannot change here (vcsim 0.24 has no DisconnectHost_Task, datastores report
// the simulator's temp directory) is set by POST /vigie/state with the whole desired state as JSON
// (what is not named returns to its baseline): disconnected hosts, datastore % used, VM snapshots
// with their age, triggered alarms. Like vCenter's default alarms, a disconnected host triggers
// "Host connection and power state" (red) and a datastore over 75/85 % "Datastore usage on disk"
// (yellow/red). VMs are powered on and off through the SOAP API itself (PowerOffVM_Task).
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

const datastoreCapacity = int64(20) << 40 // 20 TiB, a VxRail vSAN datastore
const baselineUsedPct = 40.0

// vCenter's default alarm definitions the lab triggers (names as vCenter 7 shows them).
var alarmNames = []string{
	"Host connection and power state",
	"Datastore usage on disk",
	"Virtual machine CPU usage",
	"vSphere HA host status",
}

type snapshotState struct {
	VM    string  `json:"vm"`
	AgeS  float64 `json:"age_s"`
	Count int     `json:"count"`
}

type alarmState struct {
	Entity string `json:"entity"` // name of a host, VM, datastore or cluster
	Alarm  string `json:"alarm"`  // one of alarmNames
	Status string `json:"status"` // yellow | red
}

type desiredState struct {
	DisconnectedHosts []string           `json:"disconnected_hosts"`
	DatastoreUsedPct  map[string]float64 `json:"datastore_used_pct"`
	Snapshots         []snapshotState    `json:"snapshots"`
	Alarms            []alarmState       `json:"alarms"`
	// alarm definitions deleted while still triggered somewhere (a client's name lookup fails)
	DeletedAlarms []string `json:"deleted_alarms"`
}

type lab struct {
	mu       sync.Mutex // one state change at a time
	alarms   map[string]types.ManagedObjectReference
	defs     map[string]*mo.Alarm // the definitions, to put back what a state no longer deletes
	entities map[string]mo.Reference // name -> simulator object (host, VM, datastore, cluster)
	hosts    []*simulator.HostSystem
	vms      []*simulator.VirtualMachine
	stores   []*simulator.Datastore
	clusters []*simulator.ClusterComputeResource
}

func splitNames(s string) []string {
	var out []string
	for _, name := range strings.Split(s, ",") {
		if name = strings.TrimSpace(name); name != "" {
			out = append(out, name)
		}
	}
	return out
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "host:port to serve the SDK on")
	certOut := flag.String("cert-out", "", "write the server's TLS certificate (PEM) to this file")
	certFile := flag.String("cert", "", "serve this certificate (PEM, with -key) instead of a self-signed one")
	keyFile := flag.String("key", "", "the key of -cert (PEM)")
	username := flag.String("username", "vigie@vsphere.local", "the one login the simulator accepts")
	password := flag.String("password", "", "its password")
	datacenter := flag.String("datacenter", "DC0", "datacenter name")
	clusterNames := flag.String("cluster-names", "C0", "cluster names, comma-separated")
	hostNames := flag.String("host-names", "", "host names, comma-separated, dealt in order over the clusters")
	vmNames := flag.String("vm-names", "", "VM names, comma-separated, dealt in order over the clusters")
	datastoreNames := flag.String("datastore-names", "LocalDS_0", "datastore names, comma-separated")
	flag.Parse()

	clusters, hosts, vms, stores := splitNames(*clusterNames), splitNames(*hostNames), splitNames(*vmNames), splitNames(*datastoreNames)
	if *password == "" || len(clusters) == 0 || len(hosts)%len(clusters) != 0 || len(vms)%len(clusters) != 0 || len(stores) == 0 {
		log.Fatal("need -password, and -host-names and -vm-names counts that are multiples of the clusters'")
	}

	model := simulator.VPX()
	model.Datacenter = 1
	model.Host = 0 // no standalone host: VxRail nodes are all in clusters
	model.Cluster = len(clusters)
	model.ClusterHost = len(hosts) / len(clusters)
	model.Machine = len(vms) / len(clusters)
	model.Datastore = len(stores)
	model.Portgroup = 0
	if err := model.Create(); err != nil {
		log.Fatalf("create model: %v", err)
	}
	defer model.Remove()

	// vCenter's paging, which vcsim lacks (see pagingCollector)
	paging := &pagingCollector{}
	paging.Self = model.ServiceContent.PropertyCollector
	simulator.Map.Put(paging)

	l := &lab{
		alarms:   map[string]types.ManagedObjectReference{},
		defs:     map[string]*mo.Alarm{},
		entities: map[string]mo.Reference{},
	}
	l.rename(*datacenter, clusters, hosts, vms, stores, model.ClusterHost, model.Machine)
	for i, name := range alarmNames {
		ref := types.ManagedObjectReference{Type: "Alarm", Value: fmt.Sprintf("alarm-%d", i+1)}
		alarm := &mo.Alarm{}
		alarm.Self = ref
		alarm.Info.Name = name
		alarm.Info.Key = ref.Value
		alarm.Info.Alarm = ref
		alarm.Info.Enabled = true
		alarm.Info.Entity = model.ServiceContent.RootFolder
		simulator.Map.Put(alarm)
		l.alarms[name] = ref
		l.defs[name] = alarm
	}
	if err := l.apply(desiredState{}); err != nil {
		log.Fatalf("baseline: %v", err)
	}

	cert, err := selfSigned()
	if *certFile != "" {
		cert, err = tls.LoadX509KeyPair(*certFile, *keyFile)
	}
	if err != nil {
		log.Fatalf("certificate: %v", err)
	}
	model.Service.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	model.Service.Listen = &url.URL{Host: *listen, User: url.UserPassword(*username, *password)}
	model.Service.HandleFunc("/vigie/state", l.serveState)
	model.Service.HandleFunc("/vigie/calls", serveCalls)
	server := model.Service.NewServer()
	defer server.Close()

	if *certOut != "" {
		block := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: server.Certificate().Raw})
		if err := os.WriteFile(*certOut, block, 0o644); err != nil {
			log.Fatalf("cert-out: %v", err)
		}
	}
	sdk := *server.URL
	sdk.User = nil
	fmt.Printf("ready %s\n", sdk.String())
	os.Stdout.Close() // nobody reads stdout after the ready line

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	<-signals
}

// selfSigned makes the server's certificate: the simulator's default (net/http/httptest's) is an
// RSA-1024 key that OpenSSL's default security level refuses, and verification stays on.
func selfSigned() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	template := x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "vigie-vcsim", Organization: []string{"vigie lab"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(90 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true, // self-signed: the clients trust it as its own CA
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1"), net.IPv6loopback},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, &template, &template, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// pagingCollector is vcsim's PropertyCollector with vCenter's paging: RetrievePropertiesEx returns
// at most RetrieveOptions.maxObjects objects and a token, ContinueRetrievePropertiesEx the next page
// (vcsim 0.24 returns everything at once and has no continuation). The simulator makes one per
// session by reflection, so the zero value must work.
type pagingCollector struct {
	simulator.PropertyCollector

	pagesMu sync.Mutex
	pages   map[string]pending
	next    int
}

type pending struct {
	objects []types.ObjectContent
	max     int32 // the page length the first call asked for
}

// collectorCalls counts the PropertyCollector's calls by method, over every session, for the
// tests to check a client's reads from the server's side (GET /vigie/calls).
var collectorCalls = struct {
	sync.Mutex
	n map[string]int
}{n: map[string]int{}}

func countCall(method string) {
	collectorCalls.Lock()
	collectorCalls.n[method]++
	collectorCalls.Unlock()
}

func serveCalls(w http.ResponseWriter, r *http.Request) {
	collectorCalls.Lock()
	defer collectorCalls.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(collectorCalls.n)
}

func (pc *pagingCollector) RetrieveProperties(ctx *simulator.Context, r *types.RetrieveProperties) soap.HasFault {
	countCall("RetrieveProperties")
	return pc.PropertyCollector.RetrieveProperties(ctx, r)
}

func (pc *pagingCollector) page(objects []types.ObjectContent, max int32) types.RetrieveResult {
	if max <= 0 || len(objects) <= int(max) {
		return types.RetrieveResult{Objects: objects}
	}
	pc.pagesMu.Lock()
	defer pc.pagesMu.Unlock()
	if pc.pages == nil {
		pc.pages = map[string]pending{}
	}
	pc.next++
	token := fmt.Sprintf("vigie-page-%d", pc.next)
	pc.pages[token] = pending{append([]types.ObjectContent(nil), objects[max:]...), max}
	return types.RetrieveResult{Objects: objects[:max], Token: token}
}

func (pc *pagingCollector) RetrievePropertiesEx(ctx *simulator.Context, r *types.RetrievePropertiesEx) soap.HasFault {
	countCall("RetrievePropertiesEx")
	body := pc.PropertyCollector.RetrievePropertiesEx(ctx, r).(*methods.RetrievePropertiesExBody)
	if body.Res != nil && body.Res.Returnval != nil {
		result := pc.page(body.Res.Returnval.Objects, r.Options.MaxObjects)
		body.Res.Returnval = &result
	}
	return body
}

func (pc *pagingCollector) ContinueRetrievePropertiesEx(ctx *simulator.Context, r *types.ContinueRetrievePropertiesEx) soap.HasFault {
	countCall("ContinueRetrievePropertiesEx")
	body := &methods.ContinueRetrievePropertiesExBody{}
	pc.pagesMu.Lock()
	rest, ok := pc.pages[r.Token]
	delete(pc.pages, r.Token)
	pc.pagesMu.Unlock()
	if !ok {
		body.Fault_ = simulator.Fault("unknown token "+r.Token, &types.InvalidArgument{InvalidProperty: "token"})
		return body
	}
	result := pc.page(rest.objects, rest.max)
	body.Res = &types.ContinueRetrievePropertiesExResponse{Returnval: result}
	return body
}

func (pc *pagingCollector) CancelRetrievePropertiesEx(ctx *simulator.Context, r *types.CancelRetrievePropertiesEx) soap.HasFault {
	pc.pagesMu.Lock()
	delete(pc.pages, r.Token)
	pc.pagesMu.Unlock()
	return &methods.CancelRetrievePropertiesExBody{Res: &types.CancelRetrievePropertiesExResponse{}}
}

// rename gives the simulator's objects (DC0_C0_H0, DC0_C0_RP0_VM0, LocalDS_0...) the estate's names.
func (l *lab) rename(datacenter string, clusters, hosts, vms, stores []string, hostsPer, vmsPer int) {
	for _, e := range simulator.Map.All("Datacenter") {
		e.(*simulator.Datacenter).Name = datacenter
	}
	for c, name := range clusters {
		orig := fmt.Sprintf("DC0_C%d", c)
		for _, e := range simulator.Map.All("ClusterComputeResource") {
			cr := e.(*simulator.ClusterComputeResource)
			if cr.Name == orig {
				cr.Name = name
				l.clusters = append(l.clusters, cr)
				l.entities[name] = cr
			}
		}
		for h := 0; h < hostsPer; h++ {
			orig := fmt.Sprintf("DC0_C%d_H%d", c, h)
			for _, e := range simulator.Map.All("HostSystem") {
				host := e.(*simulator.HostSystem)
				if host.Name == orig {
					host.Name = hosts[c*hostsPer+h]
					host.Summary.Config.Name = host.Name
					l.hosts = append(l.hosts, host)
					l.entities[host.Name] = host
				}
			}
		}
		for v := 0; v < vmsPer; v++ {
			orig := fmt.Sprintf("DC0_C%d_RP0_VM%d", c, v)
			for _, e := range simulator.Map.All("VirtualMachine") {
				vm := e.(*simulator.VirtualMachine)
				if vm.Name == orig {
					vm.Name = vms[c*vmsPer+v]
					vm.Config.Name = vm.Name
					vm.Summary.Config.Name = vm.Name
					l.vms = append(l.vms, vm)
					l.entities[vm.Name] = vm
				}
			}
		}
	}
	for i, name := range stores {
		orig := fmt.Sprintf("LocalDS_%d", i)
		for _, e := range simulator.Map.All("Datastore") {
			ds := e.(*simulator.Datastore)
			if ds.Name == orig {
				ds.Name = name
				ds.Summary.Name = name
				ds.Info.GetDatastoreInfo().Name = name
				l.stores = append(l.stores, ds)
				l.entities[name] = ds
			}
		}
	}
}

func (l *lab) serveState(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST the desired state", http.StatusMethodNotAllowed)
		return
	}
	var state desiredState
	if err := json.NewDecoder(r.Body).Decode(&state); err != nil {
		http.Error(w, "bad JSON: "+err.Error(), http.StatusBadRequest)
		return
	}
	if err := l.apply(state); err != nil {
		http.Error(w, err.Error(), http.StatusUnprocessableEntity)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// apply sets every knob to the desired state, the baseline for what it does not name.
func (l *lab) apply(state desiredState) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	triggered := map[types.ManagedObjectReference][]types.AlarmState{}
	now := time.Now()
	trigger := func(entity mo.Reference, alarm, status string) error {
		ref, ok := l.alarms[alarm]
		if !ok {
			return fmt.Errorf("no alarm %q (the lab has %s)", alarm, strings.Join(alarmNames, ", "))
		}
		if status != "yellow" && status != "red" {
			return fmt.Errorf("alarm status %q: yellow or red", status)
		}
		self := entity.Reference()
		triggered[self] = append(triggered[self], types.AlarmState{
			Key:           ref.Value + "." + self.Value,
			Entity:        self,
			Alarm:         ref,
			OverallStatus: types.ManagedEntityStatus(status),
			Time:          now,
		})
		return nil
	}
	for _, a := range state.Alarms {
		entity, ok := l.entities[a.Entity]
		if !ok {
			return fmt.Errorf("alarm on %q: no such host, VM, datastore or cluster", a.Entity)
		}
		if err := trigger(entity, a.Alarm, a.Status); err != nil {
			return err
		}
	}

	deleted := map[string]bool{}
	for _, name := range state.DeletedAlarms {
		if _, ok := l.defs[name]; !ok {
			return fmt.Errorf("delete alarm %q: no such alarm", name)
		}
		deleted[name] = true
	}

	disconnected := map[string]bool{}
	for _, name := range state.DisconnectedHosts {
		if _, ok := l.entities[name].(*simulator.HostSystem); !ok {
			return fmt.Errorf("disconnect %q: no such host", name)
		}
		disconnected[name] = true
	}
	for name, pct := range state.DatastoreUsedPct {
		if _, ok := l.entities[name].(*simulator.Datastore); !ok || pct < 0 || pct > 100 {
			return fmt.Errorf("datastore %q at %g %%: no such datastore or not 0-100", name, pct)
		}
	}
	snapshots := map[string]snapshotState{}
	for _, s := range state.Snapshots {
		if _, ok := l.entities[s.VM].(*simulator.VirtualMachine); !ok || s.Count < 1 {
			return fmt.Errorf("snapshot of %q: no such VM or count < 1", s.VM)
		}
		snapshots[s.VM] = s
	}

	for name, def := range l.defs {
		if deleted[name] {
			simulator.Map.Remove(def.Self)
		} else if simulator.Map.Get(def.Self) == nil {
			simulator.Map.Put(def)
		}
	}

	for _, host := range l.hosts {
		simulator.Map.WithLock(host, func() {
			if disconnected[host.Name] {
				host.Runtime.ConnectionState = types.HostSystemConnectionStateDisconnected
				host.OverallStatus = types.ManagedEntityStatusGray
			} else {
				host.Runtime.ConnectionState = types.HostSystemConnectionStateConnected
				host.OverallStatus = types.ManagedEntityStatusGreen
			}
			host.Summary.OverallStatus = host.OverallStatus
		})
		if disconnected[host.Name] {
			_ = trigger(host, "Host connection and power state", "red")
		}
	}
	for _, cr := range l.clusters {
		effective := int32(0)
		for _, ref := range cr.Host {
			if host, ok := simulator.Map.Get(ref).(*simulator.HostSystem); ok && !disconnected[host.Name] {
				effective++
			}
		}
		simulator.Map.WithLock(cr, func() {
			cr.Summary.GetComputeResourceSummary().NumEffectiveHosts = effective
		})
	}
	for _, ds := range l.stores {
		pct, ok := state.DatastoreUsedPct[ds.Name]
		if !ok {
			pct = baselineUsedPct
		}
		simulator.Map.WithLock(ds, func() {
			info := ds.Info.GetDatastoreInfo()
			ds.Summary.Capacity = datastoreCapacity
			ds.Summary.FreeSpace = int64(float64(datastoreCapacity) * (100 - pct) / 100)
			info.FreeSpace = ds.Summary.FreeSpace
			info.MaxFileSize = info.FreeSpace
		})
		switch {
		case pct >= 85:
			_ = trigger(ds, "Datastore usage on disk", "red")
		case pct >= 75:
			_ = trigger(ds, "Datastore usage on disk", "yellow")
		}
	}
	for _, vm := range l.vms {
		simulator.Map.WithLock(vm, func() {
			s, ok := snapshots[vm.Name]
			if !ok {
				vm.Snapshot = nil
				vm.RootSnapshot = nil
				return
			}
			// A chain of Count snapshots, the oldest taken AgeS ago, one hour between them.
			var chain []types.VirtualMachineSnapshotTree
			for i := s.Count - 1; i >= 0; i-- {
				taken := now.Add(-time.Duration(s.AgeS*float64(time.Second)) + time.Duration(i)*time.Hour)
				ref := types.ManagedObjectReference{Type: "VirtualMachineSnapshot", Value: fmt.Sprintf("snapshot-%s-%d", vm.Self.Value, i)}
				tree := types.VirtualMachineSnapshotTree{
					Snapshot:          ref,
					Vm:                vm.Self,
					Name:              fmt.Sprintf("before-update-%d", i+1),
					CreateTime:        taken,
					State:             vm.Runtime.PowerState,
					Id:                int32(i + 1),
					ChildSnapshotList: chain,
				}
				chain = []types.VirtualMachineSnapshotTree{tree}
			}
			vm.Snapshot = &types.VirtualMachineSnapshotInfo{RootSnapshotList: chain}
			vm.RootSnapshot = []types.ManagedObjectReference{chain[0].Snapshot}
		})
	}

	for _, entity := range l.entities {
		self := entity.Reference()
		states := triggered[self]
		simulator.Map.WithLock(entity, func() {
			switch e := entity.(type) {
			case *simulator.HostSystem:
				e.TriggeredAlarmState = states
			case *simulator.VirtualMachine:
				e.TriggeredAlarmState = states
			case *simulator.Datastore:
				e.TriggeredAlarmState = states
			case *simulator.ClusterComputeResource:
				e.TriggeredAlarmState = states
			}
		})
	}
	return nil
}
