//! `palisade-processor decode`: the reports topic as JSON lines, for people reading it by hand.
//!
//! Ingest writes binary payloads by default (`schemas::binary`), which kcat prints as bytes.
//! Piped through this command, each payload becomes one line of the message's JSON, whichever
//! layout it was written in:
//!
//! ```sh
//! kcat -C -b 127.0.0.1:9092 -t palisade-reports -e -q -f '%S %s\n' | palisade-processor decode
//! ```
//!
//! The frame is kcat's `%S %s\n`: the payload's length in decimal (`-1` for a null payload),
//! one space, the payload's bytes, a newline. The length makes the framing exact, since a binary
//! payload may hold newlines. A payload that does not decode is named on stderr (its frame
//! number and why) and skipped; the exit code is then 1. A stream that is not in this framing
//! stops the command with exit code 2.

use std::io::{BufRead, Write};

use clap::Args;

/// Flags of `decode`.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct DecodeArgs {
    /// Longest payload accepted, in bytes (a frame announcing more stops the command):
    /// bounds the one buffer the command holds. Kafka's own default limit is 1 MiB.
    #[arg(long, default_value_t = 16 * 1024 * 1024)]
    pub max_payload_bytes: usize,
}

/// Why the input stream is not kcat's `%S %s\n` framing.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error(
        "frame {frame}: expected a payload length in decimal then a space (kcat -f '%S %s\\n')"
    )]
    Length { frame: u64 },
    #[error("frame {frame}: payload of {length} bytes is over --max-payload-bytes {max}")]
    TooLong { frame: u64, length: u64, max: usize },
    #[error("frame {frame}: the input ends inside a payload of {length} bytes")]
    Truncated { frame: u64, length: usize },
    #[error("frame {frame}: expected a newline after the payload (kcat -f '%S %s\\n')")]
    Newline { frame: u64 },
    #[error("reading or writing: {0}")]
    Io(#[from] std::io::Error),
}

/// What a run printed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Payloads printed as JSON.
    pub decoded: u64,
    /// Payloads that did not decode (each named on the error stream).
    pub undecodable: u64,
    /// Null payloads (length -1), skipped.
    pub null: u64,
}

/// Reads framed payloads from `input` until it ends, writing one JSON line per message to `out`
/// and one line per payload it cannot decode to `errors`.
pub fn decode_frames(
    mut input: impl BufRead,
    mut out: impl Write,
    mut errors: impl Write,
    args: &DecodeArgs,
) -> Result<Summary, FrameError> {
    let mut summary = Summary::default();
    let mut payload = Vec::new();
    let mut frame = 0u64;
    loop {
        frame += 1;
        let Some(length) = read_length(&mut input, frame, args.max_payload_bytes)? else {
            break;
        };
        let Some(length) = length else {
            summary.null += 1;
            writeln!(errors, "frame {frame}: null payload, skipped")?;
            expect_newline(&mut input, frame)?;
            continue;
        };
        payload.resize(length, 0);
        input
            .read_exact(&mut payload)
            .map_err(|error| match error.kind() {
                std::io::ErrorKind::UnexpectedEof => FrameError::Truncated { frame, length },
                _ => FrameError::Io(error),
            })?;
        expect_newline(&mut input, frame)?;
        match schemas::ReportMessage::decode(&payload) {
            Ok(message) => {
                out.write_all(&message.encode())?;
                out.write_all(b"\n")?;
                summary.decoded += 1;
            }
            Err(error) => {
                summary.undecodable += 1;
                writeln!(errors, "frame {frame}: {}", schemas::error_chain(&error))?;
            }
        }
    }
    out.flush()?;
    Ok(summary)
}

/// The frame's length: `None` at the end of the input, `Some(None)` for a null payload.
fn read_length(
    input: &mut impl BufRead,
    frame: u64,
    max: usize,
) -> Result<Option<Option<usize>>, FrameError> {
    // "-1" or at most 20 digits, then the space.
    let mut text = Vec::with_capacity(24);
    let mut byte = [0u8];
    loop {
        if input.read(&mut byte)? == 0 {
            return if text.is_empty() {
                Ok(None)
            } else {
                Err(FrameError::Length { frame })
            };
        }
        if byte[0] == b' ' {
            break;
        }
        if text.len() == 21 {
            return Err(FrameError::Length { frame });
        }
        text.push(byte[0]);
    }
    if text == b"-1" {
        return Ok(Some(None));
    }
    if text.is_empty() || !text.iter().all(u8::is_ascii_digit) {
        return Err(FrameError::Length { frame });
    }
    let length: u64 = std::str::from_utf8(&text)
        .ok()
        .and_then(|digits| digits.parse().ok())
        .ok_or(FrameError::Length { frame })?;
    match usize::try_from(length) {
        Ok(length) if length <= max => Ok(Some(Some(length))),
        _ => Err(FrameError::TooLong { frame, length, max }),
    }
}

fn expect_newline(input: &mut impl BufRead, frame: u64) -> Result<(), FrameError> {
    let mut byte = [0u8];
    match input.read(&mut byte)? {
        1 if byte[0] == b'\n' => Ok(()),
        _ => Err(FrameError::Newline { frame }),
    }
}

/// `decode` on standard input and output: the process's exit code (0 every payload decoded,
/// 1 some did not, 2 the input is not in the framing).
pub fn run_stdio(args: &DecodeArgs) -> i32 {
    let stdin = std::io::stdin().lock();
    let stdout = std::io::BufWriter::new(std::io::stdout().lock());
    match decode_frames(stdin, stdout, std::io::stderr().lock(), args) {
        Ok(summary) if summary.undecodable == 0 => 0,
        Ok(summary) => {
            eprintln!(
                "{} payloads decoded, {} did not decode",
                summary.decoded, summary.undecodable
            );
            1
        }
        Err(error) => {
            eprintln!("error: {error}");
            2
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use schemas::{MessageFormat, ParseLimits, Parser, ReportMessage};

    fn message(id: &str) -> ReportMessage {
        let mut body = br#"{"csp-report":{"document-uri":"https://a.example/p","blocked-uri":"https://cdn.example/x.js",
            "violated-directive":"script-src-elem","original-policy":"script-src 'self'"}}"#
            .to_vec();
        let report = Parser::new(ParseLimits::default())
            .parse(&mut body)
            .expect("valid")
            .items
            .remove(0)
            .expect("a valid report");
        ReportMessage::new(id.to_owned(), 1_700_000_000_000, 7, report)
    }

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut out = format!("{} ", payload.len()).into_bytes();
        out.extend_from_slice(payload);
        out.push(b'\n');
        out
    }

    fn run(input: &[u8]) -> (Result<Summary, FrameError>, String, String) {
        let (mut out, mut errors) = (Vec::new(), Vec::new());
        let args = DecodeArgs {
            max_payload_bytes: 4096,
        };
        let result = decode_frames(input, &mut out, &mut errors, &args);
        (
            result,
            String::from_utf8(out).unwrap(),
            String::from_utf8(errors).unwrap(),
        )
    }

    #[test]
    fn binary_and_json_payloads_print_as_the_same_json() {
        let mut input = Vec::new();
        let mut expected = String::new();
        for (id, format) in [("a", MessageFormat::Binary), ("b", MessageFormat::Json)] {
            let message = message(id);
            let mut payload = Vec::new();
            message.encode_as(format, &mut payload);
            input.extend(frame(&payload));
            expected.push_str(std::str::from_utf8(&message.encode()).unwrap());
            expected.push('\n');
        }
        let (result, out, errors) = run(&input);
        assert_eq!(
            result.unwrap(),
            Summary {
                decoded: 2,
                undecodable: 0,
                null: 0
            }
        );
        assert_eq!(out, expected);
        assert_eq!(errors, "");
    }

    #[test]
    fn a_payload_holding_newlines_is_framed_by_its_length() {
        let mut message = message("nl");
        message.report.sample = Some("line one\nline two".to_owned());
        let mut payload = Vec::new();
        message.encode_as(MessageFormat::Binary, &mut payload);
        assert!(payload.contains(&b'\n'), "the test needs a raw newline");
        let (result, out, _) = run(&frame(&payload));
        assert_eq!(result.unwrap().decoded, 1);
        assert_eq!(out.lines().count(), 1);
        assert_eq!(
            ReportMessage::decode(out.trim_end().as_bytes()).unwrap(),
            message
        );
    }

    #[test]
    fn undecodable_and_null_payloads_are_named_and_skipped() {
        let mut payload = Vec::new();
        message("ok").encode_as(MessageFormat::Binary, &mut payload);
        let mut input = frame(b"not a message");
        input.extend_from_slice(b"-1 \n");
        input.extend(frame(&payload));
        let (result, out, errors) = run(&input);
        assert_eq!(
            result.unwrap(),
            Summary {
                decoded: 1,
                undecodable: 1,
                null: 1
            }
        );
        assert_eq!(out.lines().count(), 1);
        assert!(errors.starts_with("frame 1: corrupt message: "), "{errors}");
        assert!(
            errors.contains("frame 2: null payload, skipped"),
            "{errors}"
        );
    }

    #[test]
    fn input_out_of_framing_stops_with_the_frame_named() {
        let cases: [(&[u8], &str); 5] = [
            (b"{\"v\":1}\n", "frame 1: expected a payload length"),
            (
                b"5000 x\n",
                "frame 1: payload of 5000 bytes is over --max-payload-bytes 4096",
            ),
            (
                b"10 short",
                "frame 1: the input ends inside a payload of 10 bytes",
            ),
            (b"2 ab", "frame 1: expected a newline after the payload"),
            (
                b"123456789012345678901234 x",
                "frame 1: expected a payload length",
            ),
        ];
        for (input, expected) in cases {
            let error = run(input).0.unwrap_err().to_string();
            assert!(error.starts_with(expected), "{input:?}: {error}");
        }
    }

    #[test]
    fn empty_input_prints_nothing() {
        let (result, out, errors) = run(b"");
        assert_eq!(result.unwrap(), Summary::default());
        assert_eq!((out.as_str(), errors.as_str()), ("", ""));
    }
}
