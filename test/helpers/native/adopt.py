# Hands node a raw stream-socket fd (Unix domain here: this machine has no vsock loopback) so the
# test can exercise the vsock transport's fd adoption (libuv Pipe handle -> net.Server/net.Socket).
# Usage: adopt.py server|client NODE CHILD_SCRIPT
import os, socket, subprocess, sys, tempfile

mode, node, script = sys.argv[1:4]
def child(fd):
    return subprocess.Popen([node, '--import', 'tsx', script, mode, str(fd)], pass_fds=[fd],
                            stdout=subprocess.PIPE, text=True)

with tempfile.TemporaryDirectory() as d:
    if mode == 'server':
        path = os.path.join(d, 's.sock')
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.bind(path); srv.listen(8)
        p = child(srv.fileno())
        print(p.stdout.readline(), end='', flush=True)   # "listening"
        srv.close()
        peer = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        peer.connect(path)
    else:
        peer, theirs = socket.socketpair()
        p = child(theirs.fileno())
        theirs.close()
    peer.settimeout(15)
    peer.sendall(b'ping'); peer.shutdown(socket.SHUT_WR)
    reply = b''
    while True:
        b = peer.recv(65536)
        if not b: break
        reply += b
    peer.close()
    print(p.stdout.read(), end='')
    print('{"event":"peer","reply":"%s"}' % reply.decode())
    sys.exit(p.wait(timeout=15))
