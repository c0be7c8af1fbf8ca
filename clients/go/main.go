// Command rerank-client is a small Go client for rerankd: it calls Rerank and RerankStream with a
// W3C traceparent in the gRPC metadata and prints both answers, with the trace ids the server sent
// back, as one JSON object.
//
// Build it with `make go-client` (code generated from protos/ by protoc-gen-go and
// protoc-gen-go-grpc, compiled offline against Debian's Go packages), then:
//
//	clients/go/build/rerank-client -addr 127.0.0.1:50051 -query 'What is the capital of France?' \
//	    'Berlin is the capital of Germany.' 'Paris is the capital of France.'
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	rerankdv1 "github.com/rerankd/rerankd/gen/go/rerankd/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

type result struct {
	Index          uint32  `json:"index"`
	RelevanceScore float64 `json:"relevance_score"`
}

type answer struct {
	ID              string   `json:"id"`
	Model           string   `json:"model"`
	Provider        string   `json:"provider"`
	TraceID         string   `json:"trace_id"`
	HeaderTraceID   string   `json:"header_trace_id"`
	HeaderRequestID string   `json:"header_request_id"`
	Results         []result `json:"results"`
}

type report struct {
	SentTraceparent string  `json:"sent_traceparent"`
	SentTraceID     string  `json:"sent_trace_id"`
	Unary           *answer `json:"unary"`
	Stream          *answer `json:"stream"`
	StreamMessages  int     `json:"stream_messages"`
}

func randomHex(n int) string {
	buf := make([]byte, n)
	if _, err := rand.Read(buf); err != nil {
		panic(err)
	}
	return hex.EncodeToString(buf)
}

// first returns the first value of a metadata key, or "".
func first(md metadata.MD, key string) string {
	if values := md.Get(key); len(values) > 0 {
		return values[0]
	}
	return ""
}

func toResults(in []*rerankdv1.RerankResult) []result {
	out := make([]result, 0, len(in))
	for _, r := range in {
		out = append(out, result{Index: r.GetIndex(), RelevanceScore: r.GetRelevanceScore()})
	}
	return out
}

func unary(ctx context.Context, client rerankdv1.RerankServiceClient, req *rerankdv1.RerankRequest) (*answer, error) {
	var header metadata.MD
	resp, err := client.Rerank(ctx, req, grpc.Header(&header))
	if err != nil {
		return nil, fmt.Errorf("Rerank: %w", err)
	}
	return &answer{
		ID:              resp.GetId(),
		Model:           resp.GetModel(),
		Provider:        resp.GetProvider(),
		TraceID:         resp.GetTrace().GetTraceId(),
		HeaderTraceID:   first(header, "x-trace-id"),
		HeaderRequestID: first(header, "x-request-id"),
		Results:         toResults(resp.GetResults()),
	}, nil
}

func stream(ctx context.Context, client rerankdv1.RerankServiceClient, req *rerankdv1.RerankRequest) (*answer, int, error) {
	call, err := client.RerankStream(ctx, &rerankdv1.RerankStreamRequest{Request: req})
	if err != nil {
		return nil, 0, fmt.Errorf("RerankStream: %w", err)
	}
	out := &answer{Results: []result{}}
	messages := 0
	for {
		msg, err := call.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, messages, fmt.Errorf("RerankStream: %w", err)
		}
		messages++
		switch event := msg.GetEvent().(type) {
		case *rerankdv1.RerankStreamResponse_Header:
			out.ID = event.Header.GetId()
			out.Model = event.Header.GetModel()
			out.Provider = event.Header.GetProvider()
			out.TraceID = event.Header.GetTrace().GetTraceId()
		case *rerankdv1.RerankStreamResponse_Results:
			if !event.Results.GetPartial() {
				out.Results = append(out.Results, toResults(event.Results.GetResults())...)
			}
		}
	}
	if header, err := call.Header(); err == nil {
		out.HeaderTraceID = first(header, "x-trace-id")
		out.HeaderRequestID = first(header, "x-request-id")
	}
	return out, messages, nil
}

func run() error {
	addr := flag.String("addr", "127.0.0.1:50051", "rerankd address (host:port)")
	query := flag.String("query", "", "the query")
	model := flag.String("model", "", "model name or alias (empty: the server's default)")
	traceparent := flag.String("traceparent", "", "W3C traceparent to send (default: a new random one)")
	requestID := flag.String("request-id", "", "x-request-id to send (optional)")
	timeout := flag.Duration("timeout", 30*time.Second, "deadline of each call")
	flag.Parse()
	docs := flag.Args()
	if *query == "" || len(docs) == 0 {
		return errors.New("usage: rerank-client -addr HOST:PORT -query QUERY DOCUMENT...")
	}
	if *traceparent == "" {
		*traceparent = "00-" + randomHex(16) + "-" + randomHex(8) + "-01"
	}
	parts := strings.Split(*traceparent, "-")
	if len(parts) != 4 || len(parts[1]) != 32 {
		return fmt.Errorf("malformed traceparent %q", *traceparent)
	}

	conn, err := grpc.Dial(*addr, grpc.WithInsecure())
	if err != nil {
		return fmt.Errorf("dial %s: %w", *addr, err)
	}
	defer conn.Close()
	client := rerankdv1.NewRerankServiceClient(conn)

	documents := make([]*rerankdv1.Document, 0, len(docs))
	for _, text := range docs {
		documents = append(documents, &rerankdv1.Document{Text: text})
	}
	req := &rerankdv1.RerankRequest{Model: *model, Query: *query, Documents: documents}

	pairs := []string{"traceparent", *traceparent}
	if *requestID != "" {
		pairs = append(pairs, "x-request-id", *requestID)
	}
	call := func() (context.Context, context.CancelFunc) {
		ctx, cancel := context.WithTimeout(context.Background(), *timeout)
		return metadata.AppendToOutgoingContext(ctx, pairs...), cancel
	}

	out := report{SentTraceparent: *traceparent, SentTraceID: parts[1]}
	ctx, cancel := call()
	out.Unary, err = unary(ctx, client, req)
	cancel()
	if err != nil {
		return err
	}
	ctx, cancel = call()
	out.Stream, out.StreamMessages, err = stream(ctx, client, req)
	cancel()
	if err != nil {
		return err
	}
	encoder := json.NewEncoder(os.Stdout)
	encoder.SetIndent("", "  ")
	return encoder.Encode(out)
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "rerank-client:", err)
		os.Exit(1)
	}
}
