const command = process.argv[2];
process.stderr.write(`leafbridge: command ${command ?? '(none)'} is not ready yet\n`);
process.exit(2);
