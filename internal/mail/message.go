package mail

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	netmail "net/mail"
	"net/textproto"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Message is one mail to one recipient.
type Message struct {
	// To is the recipient, "addr@example.org" or "Name <addr@example.org>".
	To      string
	Subject string
	// Text is the plain-text body (required).
	Text string
	// HTML, when set, is sent as the preferred multipart/alternative part.
	HTML string
	// Headers are extra header fields, e.g. List-Unsubscribe or
	// Auto-Submitted. Message-ID may be set to keep a stable ID across
	// retries. Headers that this package writes itself (From, To, Subject,
	// Date, MIME and envelope headers) cannot be overridden. Non-ASCII
	// values are sent as encoded-words.
	Headers map[string]string
}

// maxLineLen is the hard limit of RFC 5322 section 2.1.1 (without CRLF).
const maxLineLen = 998

// foldAt is the recommended line length header fields are folded to.
const foldAt = 78

// reservedHeaders are written by this package and cannot be set by callers.
var reservedHeaders = map[string]bool{
	"From": true, "To": true, "Cc": true, "Bcc": true, "Subject": true,
	"Date": true, "Sender": true, "Return-Path": true, "Received": true,
	"Mime-Version": true, "Content-Type": true, "Content-Transfer-Encoding": true,
	"Content-Disposition": true, "Content-Id": true,
}

// parseAddress parses one mailbox, rejecting anything that could smuggle
// a line break or that needs SMTPUTF8.
func parseAddress(s string) (*netmail.Address, error) {
	if s == "" {
		return nil, errors.New("address is empty")
	}
	if err := checkHeaderText(s); err != nil {
		return nil, err
	}
	addr, err := netmail.ParseAddress(s)
	if err != nil {
		return nil, fmt.Errorf("address %q: %w", s, err)
	}
	if !isASCII(addr.Address) {
		return nil, fmt.Errorf("address %q: non-ASCII addresses are not supported", addr.Address)
	}
	if !strings.Contains(addr.Address, "@") {
		return nil, fmt.Errorf("address %q has no domain", addr.Address)
	}
	return addr, nil
}

// checkHeaderText rejects control characters in a header value; CR and LF
// would let the value start new header fields (header injection).
func checkHeaderText(s string) error {
	if !utf8.ValidString(s) {
		return errors.New("not valid UTF-8")
	}
	for _, r := range s {
		switch {
		case r == '\r' || r == '\n':
			return errors.New("contains a line break (CR or LF)")
		case r == '\t':
		case r < 0x20 || r == 0x7f:
			return fmt.Errorf("contains control character %U", r)
		}
	}
	return nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// mostlyNonASCII says whether base64 is the more compact encoding.
func mostlyNonASCII(s string) bool {
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			n++
		}
	}
	return n*3 > len(s)
}

// encodeText returns s as it may appear in an unstructured header field:
// unchanged when it is plain ASCII, otherwise as RFC 2047 encoded-words.
func encodeText(s string) string {
	switch {
	case isASCII(s) && !strings.Contains(s, "=?"):
		return s
	case isASCII(s):
		// Plain ASCII that a reader would mistake for an encoded-word; the
		// mime encoders leave ASCII alone, so encode it by hand.
		var words []string
		for len(s) > 0 {
			n := min(len(s), 45) // 60 base64 characters per encoded-word
			words = append(words, "=?utf-8?b?"+base64.StdEncoding.EncodeToString([]byte(s[:n]))+"?=")
			s = s[n:]
		}
		return strings.Join(words, " ")
	case mostlyNonASCII(s):
		return mime.BEncoding.Encode("utf-8", s)
	default:
		return mime.QEncoding.Encode("utf-8", s)
	}
}

// writeHeader writes "Name: value" folded at spaces to about foldAt
// characters; it fails when a line would exceed the RFC 5322 limit.
func writeHeader(b *bytes.Buffer, name, value string) error {
	lineLen := len(name) + 1
	b.WriteString(name)
	b.WriteByte(':')
	for i, word := range strings.Split(value, " ") {
		switch {
		case i > 0 && word != "" && lineLen+1+len(word) > foldAt && lineLen > len(name)+2:
			b.WriteString("\r\n ")
			lineLen = 1
		default:
			b.WriteByte(' ')
			lineLen++
		}
		b.WriteString(word)
		lineLen += len(word)
		if lineLen > maxLineLen {
			return fmt.Errorf("header %s has a word too long for one line", name)
		}
	}
	b.WriteString("\r\n")
	return nil
}

// newMessageID returns "<random@domain>".
func newMessageID(domain string) string {
	var r [16]byte
	_, _ = rand.Read(r[:])
	return fmt.Sprintf("<%d.%s@%s>", time.Now().UnixMilli(), hex.EncodeToString(r[:]), domain)
}

func validMessageID(s string) bool {
	if len(s) < 5 || len(s) > 250 || s[0] != '<' || s[len(s)-1] != '>' {
		return false
	}
	inner := s[1 : len(s)-1]
	left, right, ok := strings.Cut(inner, "@")
	if !ok || left == "" || right == "" || strings.Contains(right, "@") {
		return false
	}
	for i := 0; i < len(inner); i++ {
		c := inner[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`<>()[]\,;:"`, c) >= 0 {
			return false
		}
	}
	return true
}

func validFieldName(s string) bool {
	if s == "" || len(s) > 76 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 33 || s[i] > 126 || s[i] == ':' {
			return false
		}
	}
	return true
}

// built is a message ready for the SMTP dialog.
type built struct {
	from, to  string // envelope addresses
	messageID string
	data      []byte
}

// build validates msg and renders it as an RFC 5322 message with CRLF line
// endings. Nothing in it depends on the server, so it runs before dialling.
func build(from *netmail.Address, msg Message, now time.Time) (*built, error) {
	to, err := parseAddress(msg.To)
	if err != nil {
		return nil, invalidf("recipient: %v", err)
	}
	if err := checkHeaderText(msg.Subject); err != nil {
		return nil, invalidf("subject %v", err)
	}
	if msg.Text == "" {
		return nil, invalidf("text body is empty")
	}
	if !utf8.ValidString(msg.Text) || !utf8.ValidString(msg.HTML) {
		return nil, invalidf("body is not valid UTF-8")
	}

	_, domain, _ := strings.Cut(from.Address, "@")
	messageID := ""
	type field struct{ name, value string }
	var extra []field
	seen := map[string]bool{}
	names := make([]string, 0, len(msg.Headers))
	for name := range msg.Headers {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		value := msg.Headers[name]
		if !validFieldName(name) {
			return nil, invalidf("header name %q is not a valid field name", name)
		}
		canon := textproto.CanonicalMIMEHeaderKey(name)
		if seen[canon] {
			return nil, invalidf("header %q is given twice", name)
		}
		seen[canon] = true
		if reservedHeaders[canon] {
			return nil, invalidf("header %q is set by the mail package and cannot be overridden", name)
		}
		if err := checkHeaderText(value); err != nil {
			return nil, invalidf("header %s %v", name, err)
		}
		switch canon {
		case "Message-Id":
			if !validMessageID(value) {
				return nil, invalidf("Message-ID %q is not of the form <id@domain>", value)
			}
			messageID = value
			continue
		case "Reply-To":
			list, err := netmail.ParseAddressList(value)
			if err != nil {
				return nil, invalidf("Reply-To %q: %v", value, err)
			}
			parts := make([]string, len(list))
			for i, a := range list {
				if !isASCII(a.Address) {
					return nil, invalidf("Reply-To %q: non-ASCII addresses are not supported", a.Address)
				}
				parts[i] = a.String()
			}
			value = strings.Join(parts, ", ")
		default:
			value = encodeText(value)
		}
		extra = append(extra, field{name, value})
	}
	if messageID == "" {
		messageID = newMessageID(domain)
	}

	var b bytes.Buffer
	var hdrErr error
	header := func(name, value string) {
		if hdrErr == nil {
			hdrErr = writeHeader(&b, name, value)
		}
	}
	header("Date", now.Format(time.RFC1123Z))
	header("From", from.String())
	header("To", to.String())
	header("Message-ID", messageID)
	header("Subject", encodeText(msg.Subject))
	for _, f := range extra {
		header(f.name, f.value)
	}
	header("MIME-Version", "1.0")
	if hdrErr != nil {
		return nil, invalidf("%v", hdrErr)
	}

	if msg.HTML == "" {
		ctype, cte, body := encodeBody("text/plain", msg.Text)
		b.WriteString("Content-Type: " + ctype + "\r\n")
		b.WriteString("Content-Transfer-Encoding: " + cte + "\r\n\r\n")
		b.Write(body)
	} else {
		var parts bytes.Buffer
		mw := multipart.NewWriter(&parts)
		for _, p := range []struct{ typ, content string }{{"text/plain", msg.Text}, {"text/html", msg.HTML}} {
			ctype, cte, body := encodeBody(p.typ, p.content)
			w, err := mw.CreatePart(textproto.MIMEHeader{
				"Content-Type":              {ctype},
				"Content-Transfer-Encoding": {cte},
			})
			if err != nil {
				return nil, fmt.Errorf("mail: build multipart: %w", err)
			}
			_, _ = w.Write(body)
		}
		if err := mw.Close(); err != nil {
			return nil, fmt.Errorf("mail: build multipart: %w", err)
		}
		b.WriteString(`Content-Type: multipart/alternative; boundary="` + mw.Boundary() + "\"\r\n\r\n")
		b.WriteString("This is a multi-part message in MIME format.\r\n\r\n")
		b.Write(parts.Bytes())
	}
	if !bytes.HasSuffix(b.Bytes(), []byte("\r\n")) {
		b.WriteString("\r\n")
	}
	return &built{from: from.Address, to: to.Address, messageID: messageID, data: b.Bytes()}, nil
}

// encodeBody picks a transfer encoding for a UTF-8 text part: 7bit for short
// ASCII lines, base64 for mostly non-ASCII text, quoted-printable otherwise.
// Line breaks are normalised to CRLF.
func encodeBody(mediaType, s string) (ctype, cte string, body []byte) {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	s = strings.ReplaceAll(s, "\r", "\n")
	ctype = mediaType + "; charset=utf-8"

	if sevenBitSafe(s) {
		out := strings.ReplaceAll(s, "\n", "\r\n")
		if !strings.HasSuffix(out, "\r\n") {
			out += "\r\n"
		}
		return ctype, "7bit", []byte(out)
	}

	var b bytes.Buffer
	if mostlyNonASCII(s) {
		raw := []byte(strings.ReplaceAll(s, "\n", "\r\n"))
		enc := base64.StdEncoding.EncodeToString(raw)
		for len(enc) > 76 {
			b.WriteString(enc[:76])
			b.WriteString("\r\n")
			enc = enc[76:]
		}
		b.WriteString(enc)
		b.WriteString("\r\n")
		return ctype, "base64", b.Bytes()
	}
	qp := quotedprintable.NewWriter(&b)
	_, _ = qp.Write([]byte(s)) // text mode: "\n" becomes CRLF
	_ = qp.Close()
	if !bytes.HasSuffix(b.Bytes(), []byte("\r\n")) {
		b.WriteString("\r\n")
	}
	return ctype, "quoted-printable", b.Bytes()
}

// sevenBitSafe: ASCII without control characters (bar tab), lines short
// enough to need no soft breaks, no trailing whitespace that transports
// may strip.
func sevenBitSafe(s string) bool {
	for line := range strings.SplitSeq(s, "\n") {
		if len(line) > foldAt {
			return false
		}
		if strings.HasSuffix(line, " ") || strings.HasSuffix(line, "\t") {
			return false
		}
		for i := 0; i < len(line); i++ {
			c := line[i]
			if c >= 0x7f || (c < 0x20 && c != '\t') {
				return false
			}
		}
	}
	return true
}
