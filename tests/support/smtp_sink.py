#!/usr/bin/python3
"""SMTP server for selfheal's tests: stores every accepted message as a file.

usage: smtp_sink.py --listen HOST:PORT --dir DIR

Each message lands in DIR as <nanoseconds>.eml, written to a temporary name first and then
renamed, so a reader never sees half a message. DIR/ready appears once the server listens.
Runs Debian's python3-aiosmtpd (or aiosmtpd from PyPI).
"""
import argparse
import os
import signal
import threading
import time

from aiosmtpd.controller import Controller


class Store:
    def __init__(self, directory):
        self.directory = directory

    async def handle_DATA(self, server, session, envelope):
        name = "%d.eml" % time.time_ns()
        path = os.path.join(self.directory, name)
        with open(path + ".tmp", "wb") as out:
            out.write(envelope.original_content or envelope.content)
        os.rename(path + ".tmp", path)
        return "250 2.0.0 stored as %s" % name


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--listen", required=True, help="HOST:PORT to listen on")
    parser.add_argument("--dir", required=True, help="directory that receives the messages")
    args = parser.parse_args()
    host, port = args.listen.rsplit(":", 1)
    os.makedirs(args.dir, exist_ok=True)
    controller = Controller(Store(args.dir), hostname=host, port=int(port))
    controller.start()
    open(os.path.join(args.dir, "ready"), "w").close()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
