#!/usr/bin/python3
"""SMTP server for selfheal's tests: stores every accepted message as a file.

usage: smtp_sink.py --listen HOST:PORT --dir DIR [--auth-user USER --auth-password-file FILE]
                    [--starttls CERT KEY | --implicit-tls CERT KEY] [--stall-data N]

Each message lands in DIR as <nanoseconds>.eml, written to a temporary name first and then
renamed, so a reader never sees half a message. DIR/ready appears once the server listens.
Runs Debian's python3-aiosmtpd (or aiosmtpd from PyPI).

With --auth-user and --auth-password-file, the server offers AUTH PLAIN and LOGIN, also on
the plain connection, and rejects MAIL from a client that has not authenticated. The password
is the first line of the file, without its line ending.

With --starttls, the server offers STARTTLS with the given PEM certificate and key. With
--implicit-tls, it speaks TLS from the first byte, as on port 465.

With --stall-data N, the first N messages are received in full but never answered, as a relay
whose content filter hangs before the message is queued: the server writes DIR/stalled.K for
the K-th of them, holds the reply until the client gives up and closes the connection, and
does not store the message. Later messages are stored as usual.
"""
import asyncio
import argparse
import os
import signal
import ssl
import threading
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Store:
    def __init__(self, directory, stall_data=0):
        self.directory = directory
        self.stalls_left = stall_data
        self.stalled = 0

    async def handle_DATA(self, server, session, envelope):
        if self.stalls_left > 0:
            self.stalls_left -= 1
            self.stalled += 1
            open(os.path.join(self.directory, "stalled.%d" % self.stalled), "w").close()
            transport = server.transport
            # Wait for the client to give up; an hour is far beyond any test's timeout.
            for _ in range(36000):
                if transport is None or transport.is_closing():
                    break
                await asyncio.sleep(0.1)
            return "451 4.3.0 stalled on purpose and not stored"
        name = "%d.eml" % time.time_ns()
        path = os.path.join(self.directory, name)
        with open(path + ".tmp", "wb") as out:
            out.write(envelope.original_content or envelope.content)
        os.rename(path + ".tmp", path)
        return "250 2.0.0 stored as %s" % name


class PasswordCheck:
    """aiosmtpd authenticator that accepts one user with one password."""

    def __init__(self, user, password):
        self.user = user.encode()
        self.password = password.encode()

    def __call__(self, server, session, envelope, mechanism, auth_data):
        accepted = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == self.user
            and auth_data.password == self.password
        )
        if accepted:
            return AuthResult(success=True, auth_data=auth_data)
        # handled=False makes aiosmtpd send "535 5.7.8 Authentication credentials invalid".
        return AuthResult(success=False, handled=False)


def read_first_line(path):
    with open(path, encoding="utf-8") as source:
        return source.readline().rstrip("\r\n")


def server_tls_context(cert, key):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--listen", required=True, help="HOST:PORT to listen on")
    parser.add_argument("--dir", required=True, help="directory that receives the messages")
    parser.add_argument("--auth-user", help="require AUTH as this user")
    parser.add_argument(
        "--auth-password-file", help="file whose first line is the password of --auth-user"
    )
    tls_group = parser.add_mutually_exclusive_group()
    tls_group.add_argument("--starttls", nargs=2, metavar=("CERT", "KEY"), help="offer STARTTLS")
    tls_group.add_argument(
        "--implicit-tls", nargs=2, metavar=("CERT", "KEY"), help="speak TLS from the first byte"
    )
    parser.add_argument(
        "--stall-data", type=int, default=0, metavar="N",
        help="never answer the first N messages after their data",
    )
    args = parser.parse_args()
    if (args.auth_user is None) != (args.auth_password_file is None):
        parser.error("--auth-user and --auth-password-file must be given together")

    host, port = args.listen.rsplit(":", 1)
    os.makedirs(args.dir, exist_ok=True)
    auth = {}
    if args.auth_user is not None:
        password = read_first_line(args.auth_password_file)
        auth = dict(
            authenticator=PasswordCheck(args.auth_user, password),
            auth_required=True,
            auth_require_tls=False,
        )
    tls = {}
    if args.starttls is not None:
        tls = dict(tls_context=server_tls_context(*args.starttls))
    if args.implicit_tls is not None:
        tls = dict(ssl_context=server_tls_context(*args.implicit_tls))
    controller = Controller(Store(args.dir, args.stall_data), hostname=host, port=int(port), **auth, **tls)
    controller.start()
    open(os.path.join(args.dir, "ready"), "w").close()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
