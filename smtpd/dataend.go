package smtpd

// dataBody follows a DATA body on its way to go-smtp: where it ends, and
// what go-smtp's data reader needs after it to end there too.
type dataBody struct {
	end  dataEnd
	smtp goSMTPReader
}

// scan returns how many bytes of b belong to the body, end-of-data line
// included, and whether that line was among them. With that line, it
// also returns the bytes to hand go-smtp right after the body; they are
// none unless go-smtp's reader would miss the end.
func (d *dataBody) scan(b []byte) (n int, end []byte, done bool) {
	n, done = d.end.scan(b)
	d.smtp.feed(b[:n])
	if done {
		end = d.smtp.terminate()
	}
	return n, end, done
}

// goSMTPReader follows the state machine of go-smtp's data reader
// (dataReader.Read in data.go of github.com/emersion/go-smtp v0.25.1,
// itself taken from net/textproto): exactly its states and transitions,
// fed with the body bytes go-smtp reads. Check it against data.go when
// go-smtp is updated.
//
// That reader misses some ends of data: in stateCR a second '\r' moves it
// to stateData, not back to stateCR, so after "a\r\r\n" it takes ".\r\n"
// for message content and waits for another end. dataEnd sees the end
// there; terminate gives the bytes that make go-smtp's reader end too.
//
// go-smtp's reader never ends before dataEnd: the two take the same steps
// except on a CR that follows a CR, where go-smtp's reader forgets the
// first CR and dataEnd keeps it. So every line start that go-smtp's reader
// sees, dataEnd sees too, and the end-of-data line with it. (In full: in
// stateBeginLine, stateDot and stateDotCR, dataEnd is in the matching
// state; in stateCR, dataEnd is in lineCR or lineDotCR; stateEOF comes
// only from stateDotCR.)
type goSMTPReader struct {
	state int
}

// The states of go-smtp's data reader, in its order.
const (
	smtpBeginLine = iota // beginning of line; initial state
	smtpDot              // read . at beginning of line
	smtpDotCR            // read .\r at beginning of line
	smtpCR               // read \r (possibly at end of line)
	smtpData             // reading data in middle of line
	smtpEOF              // reached .\r\n end marker line
)

// step takes one byte as go-smtp's reader does. At the end it reads no
// more.
func (r *goSMTPReader) step(c byte) {
	switch r.state {
	case smtpBeginLine:
		switch c {
		case '.':
			r.state = smtpDot
		case '\r':
			r.state = smtpCR
		default:
			r.state = smtpData
		}
	case smtpDot:
		if c == '\r' {
			r.state = smtpDotCR
		} else {
			r.state = smtpData
		}
	case smtpDotCR:
		if c == '\n' {
			r.state = smtpEOF
		} else {
			r.state = smtpData
		}
	case smtpCR:
		if c == '\n' {
			r.state = smtpBeginLine
		} else {
			r.state = smtpData
		}
	case smtpData:
		if c == '\r' {
			r.state = smtpCR
		}
	}
}

// feed takes the bytes of b in order.
func (r *goSMTPReader) feed(b []byte) {
	for _, c := range b {
		r.step(c)
	}
}

// ended reports whether go-smtp's reader has reached the end of data.
func (r *goSMTPReader) ended() bool { return r.state == smtpEOF }

// dataTerminator ends go-smtp's data reader from any state. Its first two
// bytes take every state to stateData: '\r' leads to stateCR, stateDotCR
// or stateData, and '.' from each of them to stateData. From stateData,
// "\r\n" is the end of a line and ".\r\n" the end of data. No state ends
// earlier: stateEOF needs a '\n' in stateDotCR, and the only other '\n',
// the fourth byte, finds stateCR. So it ends the reader after exactly its
// 7 bytes.
//
// When dataEnd sees the end-of-data line ".\r\n" and go-smtp's reader
// does not, that reader took the '.' for content, and the "\r\n" after it
// left it in stateBeginLine: the message it hands on then ends in
// "\r.\r\n". That bare CR gets the message refused as invalid, which it
// is, as the two only part after a CR that a CR follows. The body's own
// bare CR may not reach the message: go-smtp drops the ".\r" of a line
// ".\r\r\n".
const dataTerminator = "\r.\r\n.\r\n"

// terminate returns the bytes that bring go-smtp's reader to its end after
// what it was fed, none when it is there, and steps through them.
func (r *goSMTPReader) terminate() []byte {
	var out []byte
	for i := 0; i < len(dataTerminator) && !r.ended(); i++ {
		r.step(dataTerminator[i])
		out = append(out, dataTerminator[i])
	}
	return out
}
