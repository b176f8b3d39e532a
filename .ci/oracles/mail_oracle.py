#!/usr/bin/env python3
"""Oracles for Pigeon's Mail module, written against libraries someone else wrote.

  mail_oracle.py parse FILE
      Parses a composed message with Python's standard `email` package and prints JSON:
      subject, from/to/cc/reply_to (display name and address), user headers, text and html
      bodies, attachments (filename, content type, content id, disposition, base64 bytes),
      and the parser's defects.
  mail_oracle.py parse-many FILE [FILE...]
      The same for several files at once: a JSON list.
  mail_oracle.py idna DOMAIN [DOMAIN...]
      The A-label form of each domain by the `idna` package (UTS #46 mapping), or null.
  mail_oracle.py dkim FILE TXT_RECORD_FILE
      Verifies the DKIM-Signature with dkimpy, resolving the key record to TXT_RECORD_FILE's
      content. Prints JSON {"ok": bool}.
  mail_oracle.py dkim-smtp FILE TXT_RECORD_FILE MAIL_FROM RCPT [RCPT...]
      Starts an aiosmtpd server on 127.0.0.1 (a free port), sends FILE through it with smtplib,
      and verifies the DKIM signature of the message as the server received it.
      Prints JSON {"ok": bool, "identical": bool}.

Exit code 77 means a needed module is missing (the Swift tests skip, or fail when CI=true).
Nothing here talks to anything beyond 127.0.0.1.
"""
import base64
import json
import sys


def missing(module):
    print(json.dumps({"missing": module}))
    sys.exit(77)


def mailbox(address):
    return {"name": address.display_name, "addr": address.addr_spec}


def parse(path):
    with open(path, "rb") as f:
        data = f.read()
    return parse_bytes(data)


def parse_bytes(data):
    from email import policy
    from email.parser import BytesParser, Parser

    try:
        # UTF-8 header fields (RFC 6532) read as text; the bytes parser would leave them as
        # surrogate escapes. Bodies are 7bit, quoted-printable or base64 either way.
        msg = Parser(policy=policy.SMTPUTF8).parsestr(data.decode("utf-8"))
    except UnicodeDecodeError:
        msg = BytesParser(policy=policy.SMTPUTF8).parsebytes(data)

    def addresses(name):
        header = msg[name]
        if header is None:
            return None
        return [mailbox(a) for a in header.addresses]

    def addresses_rfc2047(name):
        # CPython's modern address parser keeps the whitespace between two adjacent encoded
        # words of a display name, which RFC 2047 section 6.2 says to drop; the RFC 2047 decoder
        # of email.header does drop it. So names are also read through that decoder.
        from email.header import decode_header, make_header
        from email.utils import getaddresses

        raw = [value for key, value in msg.raw_items() if key.lower() == name]
        if not raw:
            return None
        unfolded = [v.replace("\r\n", "").replace("\n", "") for v in raw]
        result = []
        for display, addr in getaddresses(unfolded):
            result.append({"name": str(make_header(decode_header(display))) if display else "", "addr": addr})
        return result

    def body(kind):
        part = msg.get_body(preferencelist=(kind,))
        if part is None or part.get_content_subtype() != kind:
            return None
        return part.get_content()

    attachments = []
    for part in msg.walk():
        if part.is_multipart():
            continue
        disposition = part.get_content_disposition()
        if disposition not in ("attachment", "inline"):
            continue
        cid = part.get("Content-ID")
        attachments.append(
            {
                "filename": part.get_filename(),
                "content_type": part.get_content_type(),
                "content_id": str(cid) if cid is not None else None,
                "disposition": disposition,
                "content": base64.b64encode(part.get_payload(decode=True) or b"").decode("ascii"),
            }
        )

    defects = [type(d).__name__ for d in msg.defects]
    for part in msg.walk():
        defects += [type(d).__name__ for d in part.defects]
    for name in msg.keys():
        value = msg[name]
        defects += [type(d).__name__ for d in getattr(value, "defects", ())]

    result = {
        "subject": str(msg["subject"]) if msg["subject"] is not None else None,
        "from": addresses("from"),
        "to": addresses("to"),
        "cc": addresses("cc"),
        "reply_to": addresses("reply-to"),
        "from_rfc2047": addresses_rfc2047("from"),
        "to_rfc2047": addresses_rfc2047("to"),
        "has_bcc": msg["bcc"] is not None,
        "message_id": str(msg["message-id"]),
        "date": str(msg["date"]),
        "header_names": list(msg.keys()),
        "headers": {k: str(v) for k, v in msg.items() if k.lower().startswith(("x-", "list-", "in-reply-to", "references"))},
        "content_type": msg.get_content_type(),
        "text": body("plain"),
        "html": body("html"),
        "attachments": attachments,
        "defects": defects,
    }
    return result


def idna_command(domains):
    try:
        import idna
    except ImportError:
        missing("idna")
    result = []
    for domain in domains:
        try:
            result.append(idna.encode(domain, uts46=True).decode("ascii"))
        except idna.IDNAError:
            result.append(None)
    print(json.dumps(result))


def load_dkim():
    try:
        import dkim  # dkimpy
    except ImportError:
        missing("dkimpy")
    try:
        import nacl  # noqa: F401  (dkimpy needs PyNaCl for ed25519-sha256)
    except ImportError:
        missing("pynacl")
    return dkim


def verify(dkim, data, record):
    def dnsfunc(name, timeout=5):
        return record.encode("ascii")

    return bool(dkim.verify(data, dnsfunc=dnsfunc))


def dkim_command(path, record_path):
    dkim = load_dkim()
    with open(path, "rb") as f:
        data = f.read()
    with open(record_path) as f:
        record = f.read().strip()
    print(json.dumps({"ok": verify(dkim, data, record)}))


def dkim_smtp_command(path, record_path, mail_from, rcpts):
    dkim = load_dkim()
    try:
        from aiosmtpd.controller import Controller
    except ImportError:
        missing("aiosmtpd")
    import smtplib

    with open(path, "rb") as f:
        data = f.read()
    with open(record_path) as f:
        record = f.read().strip()

    received = []

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            received.append(envelope.original_content)
            return "250 OK"

    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(Handler(), hostname="127.0.0.1", port=port, enable_SMTPUTF8=True)
    controller.start()
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            options = ["SMTPUTF8"] if any(b > 127 for b in data) else []
            client.sendmail(mail_from, rcpts, data, mail_options=options)
    finally:
        controller.stop()
    got = received[0] if received else b""
    print(json.dumps({"ok": verify(dkim, got, record), "identical": got == data}))


def main(argv):
    if len(argv) >= 3 and argv[1] == "parse":
        print(json.dumps(parse(argv[2])))
    elif len(argv) >= 3 and argv[1] == "parse-many":
        print(json.dumps([parse(p) for p in argv[2:]]))
    elif len(argv) >= 2 and argv[1] == "idna":
        idna_command(argv[2:])
    elif len(argv) >= 4 and argv[1] == "dkim":
        dkim_command(argv[2], argv[3])
    elif len(argv) >= 6 and argv[1] == "dkim-smtp":
        dkim_smtp_command(argv[2], argv[3], argv[4], argv[5:])
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main(sys.argv)
