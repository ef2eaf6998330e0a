// Start unleash-server for local use and tests; scripts/unleash/unleash.sh runs this detached.
// Everything comes from the environment the script sets: the PostgreSQL port, the HTTP port and the
// INIT_*_API_TOKENS (applied by Unleash only while its database holds no tokens yet).
import { writeFileSync } from 'node:fs';
import { start } from 'unleash-server';

const env = (name, fallback) => process.env[name] ?? fallback;

const instance = await start({
  db: {
    host: '127.0.0.1',
    port: Number(env('UNLEASH_PG_PORT', '5433')),
    user: 'postgres',
    password: '',
    database: env('UNLEASH_PG_DATABASE', 'unleash'),
    ssl: false,
    pool: { min: 0, max: 8 },
  },
  server: {
    host: '127.0.0.1',
    port: Number(env('UNLEASH_HTTP_PORT', '4242')),
    unleashUrl: `http://127.0.0.1:${env('UNLEASH_HTTP_PORT', '4242')}`,
    gracefulShutdownEnable: true,
  },
  authentication: { type: 'open-source', enableApiToken: true },
  versionCheck: { enable: false },
  logLevel: env('UNLEASH_LOG_LEVEL', 'warn'),
});

// Written once the server listens, so a pid file always names a live, ready-to-serve process.
if (process.env.UNLEASH_PID_FILE) {
  writeFileSync(process.env.UNLEASH_PID_FILE, `${process.pid}\n`);
}
console.log(`unleash-server listening on http://127.0.0.1:${env('UNLEASH_HTTP_PORT', '4242')} (pid ${process.pid})`);
void instance;
