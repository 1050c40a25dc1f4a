// A tiny iperf, run inside a namespace by the rate check:
//   iperf.js recv <ip> <port> <connections>   prints {"bytes":..,"ms":..} once all senders finish
//   iperf.js send <ip> <port> <MiB>
// Times are epoch ms (timeOrigin-based) so several receivers in different processes add up.
import { connect, createServer } from 'node:net';

const [mode, host, portStr, arg] = process.argv.slice(2);
const port = Number(portStr);

if (mode === 'recv') {
  let open = Number(arg);
  let bytes = 0;
  let first = 0;
  let last = 0;
  const now = () => performance.timeOrigin + performance.now();
  const srv = createServer((s) => {
    s.on('data', (b: Buffer) => {
      if (first === 0) first = now();
      last = now();
      bytes += b.length;
    });
    s.on('end', () => {
      if (--open > 0) return;
      process.stdout.write(`${JSON.stringify({ bytes, first, last })}\n`);
      srv.close();
      process.exit(0);
    });
  });
  srv.listen(port, host, () => process.stdout.write('ready\n'));
} else if (mode === 'send') {
  const chunk = Buffer.alloc(1 << 20, 0x5a);
  let left = Number(arg);
  const deadline = Date.now() + 5_000;
  // The receiver may still be starting: retry refused connects for a few seconds.
  const attempt = (): void => {
    const s = connect(port, host, () => {
      const pump = (): void => {
        while (left > 0) {
          left--;
          if (!s.write(chunk)) return void s.once('drain', pump);
        }
        s.end();
      };
      pump();
    });
    s.on('error', (err) => {
      if (Date.now() < deadline) setTimeout(attempt, 100);
      else throw err;
    });
    s.on('close', (hadError) => hadError || process.exit(0));
  };
  attempt();
} else {
  process.stderr.write('usage: iperf.js recv|send ip port n\n');
  process.exit(2);
}
