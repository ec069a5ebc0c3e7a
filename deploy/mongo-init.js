// Runs once, on MongoDB's first start (docker-entrypoint-initdb.d), as the root user. Two users of the tenderhub
// database only: the workers' and migrate's (readWrite) and the read service's (read). Passwords come from the
// secret files, never from this file.
const fs = require("fs");
const secret = (name) => fs.readFileSync(`/run/secrets/${name}`, "utf8").trim();
const tenderhub = db.getSiblingDB("tenderhub");
tenderhub.createUser({ user: "tenderhub", pwd: secret("mongo_tenderhub_password"), roles: [{ role: "readWrite", db: "tenderhub" }] });
tenderhub.createUser({ user: "tenderhub_reader", pwd: secret("mongo_reader_password"), roles: [{ role: "read", db: "tenderhub" }] });
