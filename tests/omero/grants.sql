-- The read-only role Herald connects as (README, "OMERO connector"): SELECT on exactly the tables it
-- reads, and nothing on `password`. Run as the database owner; :'password' is psql's variable.
CREATE ROLE herald LOGIN PASSWORD :'password';
GRANT CONNECT ON DATABASE omero TO herald;
GRANT USAGE ON SCHEMA public TO herald;
GRANT SELECT ON eventlog, event, experimenter, experimentergroup, groupexperimentermap, experimenter_config,
    _roles, configuration, annotation, imageannotationlink, image TO herald;
