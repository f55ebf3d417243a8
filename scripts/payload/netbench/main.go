// Command netbench measures TCP throughput and round-trip time between two pods. It is part
// of the e2e test image, not of k1s.
//
//	netbench server [-listen :5001]
//	netbench client -addr HOST:5001 [-mib 512] [-pings 200]
//
// The client prints one line: "throughput_mib_s=N rtt_us=N".
package main

import (
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: netbench server|client ...")
		os.Exit(2)
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	listen := fs.String("listen", ":5001", "server address")
	addr := fs.String("addr", "", "server to measure against")
	mib := fs.Int("mib", 512, "MiB to send")
	pings := fs.Int("pings", 200, "round trips to time")
	_ = fs.Parse(os.Args[2:])
	var err error
	switch os.Args[1] {
	case "server":
		err = serve(*listen)
	case "client":
		err = client(*addr, *mib, *pings)
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "netbench:", err)
		os.Exit(1)
	}
}

// A connection starts with one byte: 'T' streams data to be discarded, 'P' echoes 8-byte pings.
func serve(listen string) error {
	l, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	for {
		c, err := l.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			kind := make([]byte, 1)
			if _, err := io.ReadFull(c, kind); err != nil {
				return
			}
			if kind[0] == 'T' {
				n, _ := io.Copy(io.Discard, c)
				_ = binary.Write(c, binary.BigEndian, n)
				return
			}
			_, _ = io.Copy(c, c)
		}()
	}
}

func client(addr string, mib, pings int) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	begin := time.Now()
	if _, err := c.Write([]byte{'T'}); err != nil {
		return err
	}
	for i := 0; i < mib; i++ {
		if _, err := c.Write(buf); err != nil {
			return err
		}
	}
	_ = c.(*net.TCPConn).CloseWrite()
	var received int64
	if err := binary.Read(c, binary.BigEndian, &received); err != nil {
		return err
	}
	elapsed := time.Since(begin)
	c.Close()
	if received != int64(mib)<<20 {
		return fmt.Errorf("server received %d bytes of %d", received, int64(mib)<<20)
	}

	p, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer p.Close()
	_ = p.(*net.TCPConn).SetNoDelay(true)
	if _, err := p.Write([]byte{'P'}); err != nil {
		return err
	}
	rtts := make([]time.Duration, 0, pings)
	msg := make([]byte, 8)
	for i := 0; i < pings; i++ {
		start := time.Now()
		if _, err := p.Write(msg); err != nil {
			return err
		}
		if _, err := io.ReadFull(p, msg); err != nil {
			return err
		}
		rtts = append(rtts, time.Since(start))
	}
	sort.Slice(rtts, func(i, j int) bool { return rtts[i] < rtts[j] })
	fmt.Printf("throughput_mib_s=%.0f rtt_us=%d\n", float64(mib)/elapsed.Seconds(), rtts[len(rtts)/2].Microseconds())
	return nil
}
