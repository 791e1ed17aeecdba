-- The OMERO 5.6 tables Herald reads (database schema OMERO5.4 patch 0), with OMERO's own table and
-- column names and types, trimmed to the columns Herald and these tests use plus the bootstrap rows
-- OMERO's psql-footer writes. Sources: ome/openmicroscopy sql/psql/OMERO5.4__0/schema.sql and
-- ome/omero-model src/main/resources/templates/psql-footer.vm (see ../shared/omero-integration.md 1.2-1.4).
-- Unquoted identifiers fold to lower case, as in OMERO's generated DDL.

CREATE TABLE dbpatch (id int8 PRIMARY KEY, currentPatch int4 NOT NULL, currentVersion varchar(255) NOT NULL,
    permissions int8 NOT NULL, finished timestamp, message varchar(255), previousPatch int4 NOT NULL,
    previousVersion varchar(255) NOT NULL, external_id int8 UNIQUE);
CREATE TABLE configuration (name varchar(255) PRIMARY KEY, value text);
CREATE TABLE _roles (root_user_id int8 NOT NULL, guest_user_id int8 NOT NULL, system_group_id int8 NOT NULL,
    user_group_id int8 NOT NULL, guest_group_id int8 NOT NULL);
CREATE TABLE _lock_ids (id int4 PRIMARY KEY, name varchar(255) NOT NULL UNIQUE);
CREATE SEQUENCE _lock_seq;

CREATE TABLE eventtype (id int8 PRIMARY KEY, permissions int8 NOT NULL, value varchar(255) NOT NULL UNIQUE,
    external_id int8 UNIQUE);
CREATE TABLE experimenter (id int8 PRIMARY KEY, permissions int8 NOT NULL, email varchar(255),
    firstName varchar(255) NOT NULL, institution varchar(255), lastName varchar(255) NOT NULL,
    ldap bool NOT NULL, middleName varchar(255), omeName varchar(255) NOT NULL UNIQUE, version int4,
    external_id int8 UNIQUE);
CREATE TABLE experimenter_config (experimenter_id int8 NOT NULL REFERENCES experimenter, name varchar(255) NOT NULL,
    value varchar(255) NOT NULL, index int4 NOT NULL, PRIMARY KEY (experimenter_id, index));
CREATE TABLE experimentergroup (id int8 PRIMARY KEY, description text, permissions int8 NOT NULL, ldap bool NOT NULL,
    name varchar(255) NOT NULL UNIQUE, version int4, external_id int8 UNIQUE);
CREATE TABLE groupexperimentermap (id int8 PRIMARY KEY, permissions int8 NOT NULL, owner bool NOT NULL,
    version int4, child int8 NOT NULL REFERENCES experimenter, external_id int8 UNIQUE,
    parent int8 NOT NULL REFERENCES experimentergroup, child_index int4 NOT NULL, UNIQUE (parent, child));
CREATE TABLE session (id int8 PRIMARY KEY, closed timestamp, defaultEventType varchar(255) NOT NULL,
    permissions int8 NOT NULL, message text, started timestamp NOT NULL, timeToIdle int8 NOT NULL,
    timeToLive int8 NOT NULL, userAgent varchar(255), userIP varchar(45), uuid varchar(255) NOT NULL UNIQUE,
    version int4, external_id int8 UNIQUE, node int8, owner int8 NOT NULL REFERENCES experimenter, sudoer int8);
CREATE TABLE event (id int8 PRIMARY KEY, permissions int8 NOT NULL, status varchar(255), time timestamp NOT NULL,
    containingEvent int8 REFERENCES event, external_id int8 UNIQUE, experimenter int8 NOT NULL REFERENCES experimenter,
    experimenterGroup int8 NOT NULL REFERENCES experimentergroup, "session" int8 NOT NULL REFERENCES session,
    type int8 NOT NULL REFERENCES eventtype);
CREATE TABLE eventlog (id int8 PRIMARY KEY, action varchar(255) NOT NULL, permissions int8 NOT NULL,
    entityId int8 NOT NULL, entityType varchar(255) NOT NULL, external_id int8 UNIQUE,
    event int8 NOT NULL REFERENCES event);
CREATE INDEX i_EventLog_event ON eventlog (event);
CREATE INDEX eventlog_entitytype ON eventlog (entitytype);
CREATE INDEX eventlog_entityid ON eventlog (entityid);
CREATE INDEX eventlog_action ON eventlog (action);
CREATE TABLE node (id int8 PRIMARY KEY, conn text NOT NULL, permissions int8 NOT NULL, down timestamp,
    scale int4, up timestamp NOT NULL, uuid varchar(255) NOT NULL UNIQUE, version int4, external_id int8 UNIQUE);
CREATE TABLE password (experimenter_id bigint PRIMARY KEY REFERENCES experimenter, hash varchar(255),
    changed timestamp);
CREATE TABLE image (id int8 PRIMARY KEY, acquisitionDate timestamp, archived bool, description text,
    permissions int8 NOT NULL, name text NOT NULL, partial bool, version int4, creation_id int8 NOT NULL REFERENCES event,
    external_id int8 UNIQUE, group_id int8 NOT NULL REFERENCES experimentergroup,
    owner_id int8 NOT NULL REFERENCES experimenter, update_id int8 NOT NULL REFERENCES event);
CREATE TABLE annotation (discriminator varchar(31) NOT NULL, id int8 PRIMARY KEY, description text,
    permissions int8 NOT NULL, name text, ns text, version int4, boolValue bool, textValue text,
    doubleValue float8, longValue int8, termValue text, timeValue timestamp,
    creation_id int8 NOT NULL REFERENCES event, external_id int8 UNIQUE,
    group_id int8 NOT NULL REFERENCES experimentergroup, owner_id int8 NOT NULL REFERENCES experimenter,
    update_id int8 NOT NULL REFERENCES event, "file" int8);
CREATE TABLE imageannotationlink (id int8 PRIMARY KEY, permissions int8 NOT NULL, version int4,
    child int8 NOT NULL REFERENCES annotation, creation_id int8 NOT NULL REFERENCES event, external_id int8 UNIQUE,
    group_id int8 NOT NULL REFERENCES experimentergroup, owner_id int8 NOT NULL REFERENCES experimenter,
    update_id int8 NOT NULL REFERENCES event, parent int8 NOT NULL REFERENCES image, UNIQUE (parent, child, owner_id));

-- One sequence per root type, and OMERO's block allocator (psql-footer: an advisory lock per sequence).
CREATE SEQUENCE seq_event; CREATE SEQUENCE seq_eventlog; CREATE SEQUENCE seq_experimenter;
CREATE SEQUENCE seq_experimentergroup; CREATE SEQUENCE seq_groupexperimentermap; CREATE SEQUENCE seq_session;
CREATE SEQUENCE seq_image; CREATE SEQUENCE seq_annotation; CREATE SEQUENCE seq_imageannotationlink;
CREATE SEQUENCE seq_node; CREATE SEQUENCE seq_eventtype;

CREATE OR REPLACE FUNCTION ome_nextval(seq VARCHAR, increment int4) RETURNS INT8 AS '
DECLARE
      Lid  int4;
      nv   int8;
BEGIN
      SELECT id INTO Lid FROM _lock_ids WHERE name = seq;
      IF Lid IS NULL THEN
          SELECT INTO Lid nextval(''_lock_seq'');
          INSERT INTO _lock_ids (id, name) VALUES (Lid, seq);
      END IF;
      PERFORM pg_advisory_lock(1, Lid);
      PERFORM nextval(seq) FROM generate_series(1, increment);
      SELECT currval(seq) INTO nv;
      PERFORM pg_advisory_unlock(1, Lid);
      RETURN nv;
END;' LANGUAGE plpgsql;
CREATE OR REPLACE FUNCTION ome_nextval(seq VARCHAR) RETURNS INT8 AS '
BEGIN
      RETURN ome_nextval(seq, 1);
END;' LANGUAGE plpgsql;

-- Bootstrap, as psql-footer does it: root 0 and guest 1; groups system 0, user 1, guest 2.
INSERT INTO dbpatch (id, currentVersion, currentPatch, previousVersion, previousPatch, permissions, finished, message)
    VALUES (0, 'OMERO5.4', 0, 'OMERO0.0', 0, -52, now(), 'Database ready.');
INSERT INTO configuration (name, value) VALUES ('omero.db.uuid', '6f1c3f3e-3b2a-4c8e-9a51-0d2b9c7e4a10');
INSERT INTO eventtype (id, permissions, value) VALUES (0, -52, 'Bootstrap');
INSERT INTO eventtype (id, permissions, value) SELECT nextval('seq_eventtype'), -52, v
    FROM unnest(ARRAY['Import', 'Internal', 'Shoola', 'User', 'Task', 'Test', 'Processing', 'FullText', 'Sessions']) v;
INSERT INTO experimenter (id, permissions, version, omeName, firstName, lastName, ldap)
    VALUES (0, 0, 0, 'root', 'root', 'root', false);
INSERT INTO experimenter (id, permissions, version, omeName, firstName, lastName, ldap)
    VALUES (nextval('seq_experimenter'), -52, 0, 'guest', 'Guest', 'Account', false);
INSERT INTO session (id, permissions, timetoidle, timetolive, started, closed, defaulteventtype, uuid, owner)
    VALUES (0, -52, 0, 0, now(), now(), 'BOOTSTRAP', '00000000-0000-0000-0000-000000000000', 0);
INSERT INTO experimentergroup (id, permissions, version, ldap, name) VALUES (0, -52, 0, false, 'system');
INSERT INTO experimentergroup (id, permissions, version, ldap, name)
    VALUES (nextval('seq_experimentergroup'), -52, 0, false, 'user');
INSERT INTO experimentergroup (id, permissions, version, ldap, name)
    VALUES (nextval('seq_experimentergroup'), -54, 0, false, 'guest');
INSERT INTO event (id, permissions, time, status, experimenter, experimenterGroup, session, type)
    VALUES (0, -52, now(), 'BOOTSTRAP', 0, 0, 0, 0);
INSERT INTO groupexperimentermap (id, permissions, version, parent, child, child_index, owner)
    VALUES (0, -52, 0, 0, 0, 0, false);
INSERT INTO groupexperimentermap (id, permissions, version, parent, child, child_index, owner)
    VALUES (nextval('seq_groupexperimentermap'), -52, 0, 1, 0, 1, false);
INSERT INTO groupexperimentermap (id, permissions, version, parent, child, child_index, owner)
    VALUES (nextval('seq_groupexperimentermap'), -52, 0, 2, 1, 0, false);
INSERT INTO _roles (root_user_id, guest_user_id, system_group_id, user_group_id, guest_group_id)
    VALUES (0, 1, 0, 1, 2);
INSERT INTO password (experimenter_id, hash) VALUES (0, ''), (1, '');
